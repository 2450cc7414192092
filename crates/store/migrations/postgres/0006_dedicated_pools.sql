-- Dedicated pools (9.3): the desired pool of a service version, kept with the service so that
-- deleting the service deletes its pool and an update keeps it. NULL: no dedicated pool.
ALTER TABLE services ADD COLUMN pool_initial_size INTEGER;
ALTER TABLE services ADD COLUMN pool_max_size INTEGER;
