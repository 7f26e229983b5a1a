#!/bin/sh
# asyncmig in a container, by hand or from any scheduler that can run `docker run`.
# /srv/asyncmig holds the source (app.db), the logs and the reject store; the target's URL
# is in /srv/asyncmig/secrets/pg-url (one line, mode 0600), never on the command line.
set -eu
docker build -t asyncmig:latest "$(dirname "$0")/.."

# the first time: the whole migration (creates the tables, records run 1 in the history)
docker run --rm --read-only --tmpfs /tmp --network host \
    -v /srv/asyncmig:/data -v /srv/asyncmig/secrets/pg-url:/run/secrets/pg-url:ro \
    -e ASYNCMIG_PG_FILE=/run/secrets/pg-url \
    asyncmig:latest run --sqlite /data/app.db

# every night after: nothing if the file is unchanged, else only the rows that changed
docker run --rm --read-only --tmpfs /tmp --network host \
    -v /srv/asyncmig:/data -v /srv/asyncmig/secrets/pg-url:/run/secrets/pg-url:ro \
    -e ASYNCMIG_PG_FILE=/run/secrets/pg-url \
    asyncmig:latest sync --sqlite /data/app.db --if-changed
