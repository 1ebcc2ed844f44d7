#!/usr/bin/env bash
# Post a payload to the local server's /invocations, as SageMaker's runtime would, and print the answer.
#   docker/local_test/predict.sh [payload-file] [content-type]
# The payload defaults to payload.json beside this script; the content type follows the file's extension
# (.json application/json, .jsonl application/jsonlines, .csv text/csv). Waits up to BSM_PING_TIMEOUT_S
# (default 60) seconds for /ping to answer first, so it can follow serve_local.sh started in the background.
set -euo pipefail
# shellcheck source=docker/local_test/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

payload="${1:-$here/payload.json}"
[[ -f "$payload" ]] || die "payload file '$payload' does not exist"
content_type="${2:-}"
if [[ -z "$content_type" ]]; then
    case "$payload" in
        *.json) content_type=application/json ;;
        *.jsonl) content_type=application/jsonlines ;;
        *.csv) content_type=text/csv ;;
        *) die "cannot tell the content type of '$payload' from its extension: pass it as the second argument" ;;
    esac
fi
command -v curl > /dev/null 2>&1 || die "curl is not installed"

url="http://localhost:$port"
deadline=$((SECONDS + ${BSM_PING_TIMEOUT_S:-60}))
until curl -sf -o /dev/null "$url/ping"; do
    ((SECONDS < deadline)) || die "no answer from $url/ping: is serve_local.sh running?"
    sleep 1
done
curl -sS --fail-with-body -X POST -H "Content-Type: $content_type" --data-binary "@$payload" "$url/invocations"
echo
