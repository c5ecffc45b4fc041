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
// client kit's operations (client/src/operations), each set generated on its own.
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
      documents: ["client/src/operations/*.graphql"],
    },
    // Which concrete types each union and interface has, for Apollo's InMemoryCache.
    "client/src/generated/possible-types.ts": {
      plugins: ["fragment-matcher"],
      config: { useExplicitTyping: true },
    },
  },
};

export default config;
