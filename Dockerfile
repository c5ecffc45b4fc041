# One API instance. Configure it with DATABASE_URL, REDIS_URL, JWT_SECRET and
# PLATFORM_ADMIN_KEY (required: the image runs in production mode; see .env.example).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY prisma ./prisma
COPY codegen.ts schema.graphql ./
# Installs everything and generates the Prisma client (postinstall), then drops dev tools.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app /app
EXPOSE 4000
USER node
CMD ["node", "--enable-source-maps", "dist/main.js"]
