# syntax=docker/dockerfile:1
# Build: compile src/ only (tsconfig.build.json: no tests, no scripts, no dev KMS).
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build:production

# Runtime: production dependencies only (the toolchain is there only while better-sqlite3 may need compiling).
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
    && npm ci --omit=dev --no-audit --no-fund \
    && npm cache clean --force \
    && apt-get purge -y python3 make g++ && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
COPY --from=build /app/dist ./dist
COPY bin ./bin
RUN mkdir -p /data && chown node:node /data && chmod 700 /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# The first start initialises /data/vault and writes the starter API keys to /data/starter-api-keys.json
# (mode 0600); the container log says only where they are. Read them once (docker cp / docker exec), then delete the file.
ENTRYPOINT ["node", "bin/pii-vault.js"]
CMD ["start", "--data-dir", "/data/vault", "--keys-file", "/data/starter-api-keys.json", "--host", "0.0.0.0", "--port", "8080"]
