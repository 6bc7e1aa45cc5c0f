# pii-vault container image. Plain `docker build .` (no BuildKit frontend is fetched: no syntax line).
# Node 24 is an LTS line (maintained until April 2028) that better-sqlite3 12 supports (engines: 20.x–26.x, prebuilt
# binaries); Node 20, which the tests also run on, is past its end of life. Another LTS: --build-arg NODE_VERSION=26.
ARG NODE_VERSION=24

# 1. Compile src/ only (tsconfig.build.json: no tests, no scripts, no dev KMS).
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build:production

# 2. Production dependencies only; the toolchain is here only in case better-sqlite3 has to be compiled,
#    and its build objects and sources are dropped, keeping the one .node binary.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && cd node_modules/better-sqlite3 \
    && rm -rf build/Release/obj build/Release/obj.target build/Release/.deps build/Release/test_extension.node deps src

# The dev KMS for the docker-compose example (tests and local runs only; the runtime image below does not have it).
FROM build AS dev-kms
RUN printf '{"extends":"./tsconfig.json","compilerOptions":{"types":["node"],"incremental":false},"include":["src/**/*.ts"]}' \
        > tsconfig.dev-kms.json \
    && npx tsc -p tsconfig.dev-kms.json
COPY bin ./bin
RUN mkdir -p /kms && chown node:node /kms
USER node
VOLUME ["/kms"]
EXPOSE 4599
ENTRYPOINT ["node", "bin/pii-vault.js", "dev-kms", "--host", "0.0.0.0", "--port", "4599", "--data", "/kms/kms.json"]

# 3. Runtime: the compiled vault, production node_modules, the CLI; no compiler, no tests, non-root.
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin/pii-vault.js bin/docker-entrypoint.sh ./bin/
RUN mkdir -p /data && chown node:node /data && chmod 700 /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# The image has no curl: node asks /readyz (database answers, keys open). With tls.* set in config.json, use https here.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains in-flight requests for up to shutdownTimeoutMs (10 s): give the container longer to stop
# (docker run --stop-timeout 30, compose stop_grace_period: 30s, Kubernetes terminationGracePeriodSeconds: 30).
STOPSIGNAL SIGTERM
# The first start initialises /data/vault and writes the starter API keys to /data/starter-api-keys.json (mode 0600);
# the container log says only where they are. Read them once (docker exec … cat), then delete the file.
# In production supply the master key apart from the data volume: PII_VAULT_MASTER_KEY from your secrets manager
# (no master.key is then written to /data), or AWS KMS.
ENTRYPOINT ["bin/docker-entrypoint.sh"]
CMD ["start", "--data-dir", "/data/vault", "--keys-file", "/data/starter-api-keys.json", "--host", "0.0.0.0", "--port", "8080"]
