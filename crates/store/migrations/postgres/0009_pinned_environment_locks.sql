-- A service runs with the lock its environment had when the service was published or last
-- updated, not with whatever a later rebuild of the environment resolved: an environment's
-- owner must not be able to change the packages under other users' services. Services that
-- exist already are pinned to their environment's current lock.
ALTER TABLE services ADD COLUMN environment_lock TEXT;

UPDATE services SET environment_lock =
    (SELECT lock FROM environments WHERE environments.name = services.environment)
    WHERE environment IS NOT NULL;
