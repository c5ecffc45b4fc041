import type { CodegenConfig } from "@graphql-codegen/cli";

// Typed documents for every operation written in the tests, from the committed schema.
const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["test/**/*.ts", "!test/generated/**"],
  ignoreNoDocuments: true,
  generates: {
    "test/generated/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        emitLegacyCommonJSImports: false,
        scalars: { DateTime: "string", ID: "string" },
        enumsAsTypes: true,
      },
    },
  },
};

export default config;
