# One API instance. Configure it with DATABASE_URL, REDIS_URL, JWT_SECRET and
# PLATFORM_ADMIN_KEY (required: the image runs in production mode; see .env.example).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY prisma ./prisma
COPY codegen.ts schema.graphql tsconfig.json ./
COPY scripts ./scripts
# The workspaces: the client kit and the embeddable UI (built into ui/dist by postinstall).
COPY client ./client
COPY ui ./ui
# Installs everything, generates the Prisma client and typed documents and builds the UI
# pages (postinstall), then drops dev tools.
RUN npm ci --no-audit --no-fund
COPY src ./src
RUN npm run build && npm prune --omit=dev && mkdir -p data/attachments

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# Owned by the user the server runs as, so it can write ./data (PGlite, attachments).
COPY --from=build --chown=node:node /app /app
EXPOSE 4000
USER node
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 4000) + '/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "--enable-source-maps", "dist/main.js"]
