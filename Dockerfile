FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY migrations ./migrations
COPY test ./test
COPY bench ./bench
RUN npx tsc -p . && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY policies ./policies
USER node
EXPOSE 3000
# the flags of `npm start` (package.json): a larger young generation, ~15 % less CPU per ingested event
CMD ["node", "--max-semi-space-size=64", "dist/src/main.js"]
