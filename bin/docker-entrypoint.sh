#!/bin/sh
# Container entry point: fail with one clear line when the data volume cannot be used safely, then run the CLI.
set -eu
DATA=${PII_VAULT_DATA_VOLUME:-/data}
if [ ! -w "$DATA" ] || [ ! -x "$DATA" ]; then
  echo "pii-vault: the data volume $DATA is not writable by the vault's user (uid $(id -u), gid $(id -g));" \
    "give it to that user (chown $(id -u):$(id -g)) or to its group (Kubernetes fsGroup: $(id -g))" >&2
  exit 1
fi
# A group-writable volume (Kubernetes fsGroup) is accepted: the vault keeps its files in a 0700 directory inside it
# (with fsGroupChangePolicy: OnRootMismatch, so that Kubernetes does not add group access to them later).
# A volume every user may write is refused.
if [ -n "$(find "$DATA" -maxdepth 0 -perm -0002)" ]; then
  echo "pii-vault: the data volume $DATA is writable by every user; chmod o-w it (group-writable is fine)" >&2
  exit 1
fi
exec node "$(dirname "$0")/pii-vault.js" "$@"
