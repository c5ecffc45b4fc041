import { graphql } from "../generated/gql.ts";

/** Sent as a multipart request (see the tests' upload helpers): File has no JSON form. */
export const UploadAttachment = graphql(`
  mutation UploadAttachment($conversationId: ID!, $file: File!) {
    uploadAttachment(conversationId: $conversationId, file: $file) {
      id
      filename
      mimeType
      size
      url
    }
  }
`);
