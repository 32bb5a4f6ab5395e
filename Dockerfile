# syntax=docker/dockerfile:1
# Rendition: one image for every role (`api`, `worker`, `all`, `migrate`, `org`, `key`; the
# arguments of services/main.ts). See docs/deployment.md; that file also says what was not run.
#
#   docker build -t rendition .
#   docker run --rm -p 8080:8080 rendition            # `all` on embedded PGlite, data in /data
#   docker run --rm rendition worker                  # with DATABASE_URL, NATS_URL, RENDITION_ENCRYPTION_KEY

ARG NODE_IMAGE=node:24-bookworm-slim

# --- dependencies: production packages only (tsx is one: the services run from TypeScript) ---
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- the web dashboard (web/ → web/dist), built with Vite, a devDependency ---
FROM ${NODE_IMAGE} AS web
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY gen ./gen
COPY web ./web
COPY scripts/build-web.ts ./scripts/
RUN node --import tsx scripts/build-web.ts

# --- runtime: Debian's ffmpeg, tini as PID 1, prlimit (util-linux) for ffmpeg's limits, an unprivileged user ---
FROM ${NODE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg tini ca-certificates util-linux \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY gen ./gen
COPY services ./services
COPY workers ./workers
# Served at / by the API (services/api/web-routes.ts reads web/dist).
COPY --from=web /app/web/dist ./web/dist
# The node image's `node` user (uid 1000) owns only the data and scratch directories; the code
# stays root-owned and read-only to it.
RUN mkdir -p /data /work && chown node:node /data /work
USER node
ENV RENDITION_DATA_DIR=/data \
    RENDITION_TMP_DIR=/work \
    FFMPEG_PATH=/usr/bin/ffmpeg \
    FFPROBE_PATH=/usr/bin/ffprobe
VOLUME ["/data"]
EXPOSE 8080
# tini forwards SIGTERM to node (graceful shutdown) and reaps the ffmpeg children.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--import", "tsx", "services/main.ts"]
CMD ["all"]
