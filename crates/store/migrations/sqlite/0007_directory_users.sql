-- Directory sign-in: users who sign in through LDAP / Active Directory are kept beside the
-- local accounts (so that login sessions, which refer to users, work the same), with no
-- password, their display name and e-mail, and when their groups (and so their role) were
-- last read from the directory.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN groups_checked_at BIGINT;
