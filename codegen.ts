import type { CodegenConfig } from "@graphql-codegen/cli";

const presetConfig = {
  preset: "client",
  presetConfig: { fragmentMasking: false },
  config: {
    useTypeImports: true,
    emitLegacyCommonJSImports: false,
    scalars: { DateTime: "string", ID: "string", JSON: "unknown", File: "File" },
    enumsAsTypes: true,
  },
} as const;

// Typed documents from the committed schema: the operations written in the tests, and the
// client kit's operations (client/src/operations) and the UI's (ui/src), each set generated on its own.
const config: CodegenConfig = {
  schema: "schema.graphql",
  ignoreNoDocuments: true,
  generates: {
    "test/generated/": {
      ...presetConfig,
      documents: ["test/**/*.ts", "!test/generated/**", "!test/clients/**"],
      config: { ...presetConfig.config, scalars: { DateTime: "string", ID: "string" } },
    },
    "client/src/generated/": {
      ...presetConfig,
      // persisted-documents.json: { sha256: document } of every kit operation, the manifest
      // TRUSTED_DOCUMENTS takes; each typed document carries its hash (`__meta__.hash`).
      presetConfig: { ...presetConfig.presetConfig, persistedDocuments: { hashAlgorithm: "sha256" } },
      documents: ["client/src/operations/*.graphql"],
    },
    // The embeddable UI's own operations (ui/src/*.ts: graphql(`...`) tagged documents).
    // Hashed like the kit's: `npm run build:ui` copies the manifest into the build, where the
    // server trusts it alongside TRUSTED_DOCUMENTS.
    "ui/src/generated/": {
      ...presetConfig,
      presetConfig: { ...presetConfig.presetConfig, persistedDocuments: { hashAlgorithm: "sha256" } },
      documents: ["ui/src/**/*.{ts,tsx}", "!ui/src/generated/**"],
    },
    // Which concrete types each union and interface has, for Apollo's InMemoryCache.
    "client/src/generated/possible-types.ts": {
      plugins: ["fragment-matcher"],
      config: { useExplicitTyping: true },
    },
  },
};

export default config;
