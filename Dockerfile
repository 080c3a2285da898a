# syntax=docker/dockerfile:1
# One image, one CLI: `amber operator` (the Deployment), `amber collect` (the collection Job,
# privileged and root by its own securityContext), `amber verify` (offline checks).
#
#   docker build -t <registry>/amber:0.1.0 --build-arg VERSION=0.1.0 .
#
# Node on Debian bookworm: the collector needs Debian's `attr` (getfattr) for overlay opaque
# directories (docs/adr/0004-collector.md). The Node version is the one in .nvmrc, which
# development and CI use too (scripts/node-toolchain.sh; a unit test keeps the two equal).
ARG NODE_IMAGE=node:24.22.3-bookworm-slim

# Compile TypeScript with the dev dependencies (tsc); only dist/ leaves this stage.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies only, resolved from the same lock file.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="amber" \
      org.opencontainers.image.description="Kubernetes operator that preserves the evidence of a container compromise" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# attr: getfattr, read by `amber collect` for trusted.overlay.opaque markers.
# conntrack: `amber collect --cut-connections` deletes the suspect's tracked connections in the
# host's network namespace (entered with util-linux's nsenter, which Debian always installs).
# tcpdump: the packetCapture group captures the suspect's traffic inside its network namespace
# (ADR 0024; the byte cap is enforced by the collector on whole packets, not by tcpdump).
RUN apt-get update \
 && apt-get install -y --no-install-recommends attr conntrack tcpdump \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# package.json carries "type": "module", which makes dist/*.js ES modules.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist

# `amber` on PATH: the collection Job runs command ["amber"], and exec keeps node as PID 1 so it
# receives SIGTERM itself (the operator stops gracefully and releases its leader Lease).
RUN printf '#!/bin/sh\nexec node --enable-source-maps /app/dist/cmd/amber.js "$@"\n' > /usr/local/bin/amber \
 && chmod 0755 /usr/local/bin/amber \
 && amber --help > /dev/null

ENV NODE_ENV=production
# A numeric non-root user, so the kubelet can check runAsNonRoot without a passwd lookup. The
# collection Job overrides it with runAsUser: 0 (it reads every container's files).
USER 65532:65532
ENTRYPOINT ["amber"]
CMD ["--help"]
