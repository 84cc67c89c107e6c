#!/usr/bin/env bash
# Starts extauthz on the development config and prints how to try it.
set -euo pipefail
bin=$1
cfg=$2
dir=$(dirname "$cfg")
# A checkout made under umask 002 leaves the development key group-writable,
# which extauthz refuses for any secret file.
chmod go-w "$dir/private.pem"
token=$("$bin" token --key "$dir/private.pem" --kid dev-1 \
  --iss https://issuer.dev.local --aud llm-gateway --sub alice@example.com \
  --groups eng --claim email=alice@example.com --ttl 12h)
cat <<MSG

extauthz (development config: $cfg)
  gRPC ext_authz  127.0.0.1:9001   HTTP forward-auth 127.0.0.1:9002   admin 127.0.0.1:9090

Try it from another terminal. A developer token for alice (group eng), valid 12h:

  TOKEN=$token

Allowed (200, identity headers in the response):
  curl -i -H "authorization: Bearer \$TOKEN" -H "x-forwarded-method: POST" -H "x-forwarded-uri: /v1/chat/completions" http://127.0.0.1:9002/

Denied (401 invalid_token):
  curl -i -H "authorization: Bearer nope.nope.nope" -H "x-forwarded-method: GET" -H "x-forwarded-uri: /v1/models" http://127.0.0.1:9002/

Over gRPC, as Envoy calls it (needs grpcurl):
  grpcurl -plaintext -d '{"attributes":{"request":{"http":{"method":"POST","path":"/v1/chat/completions","headers":{"authorization":"Bearer '\$TOKEN'"}}}}}' 127.0.0.1:9001 envoy.service.auth.v3.Authorization/Check

An API key (embedded store, shared through $dir/keys.json):
  $bin keys create --config $cfg --owner bob --groups eng
  curl -i -H "x-api-key: ek_..." -H "x-forwarded-method: GET" -H "x-forwarded-uri: /v1/models" http://127.0.0.1:9002/

Metrics: curl -s 127.0.0.1:9090/metrics | grep ^extauthz_     Readiness: curl -s 127.0.0.1:9090/readyz
Stop with Ctrl-C.

MSG
exec "$bin" serve --config "$cfg"
