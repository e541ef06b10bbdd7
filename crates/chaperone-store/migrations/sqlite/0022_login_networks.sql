-- The networks each account completed a login from (every factor it has), by the account's
-- lockout subject (a keyed hash of its name, as the failure counters use). Failed logins
-- from one of these are counted apart from the rest, so that guesses sent from elsewhere do
-- not lock the account's owner out where they usually log in.
CREATE TABLE login_networks (
    subject TEXT   NOT NULL,
    network TEXT   NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (subject, network)
);
