import {
  type DocumentNode,
  type GraphQLField,
  type GraphQLSchema,
  Kind,
  TypeInfo,
  visit,
  visitWithTypeInfo,
} from "graphql";

/**
 * Field extension for fields whose value or visibility depends on who the viewer is, not
 * only on what they may do (`reactedByViewer`, unread counts, fields visible to the user
 * themselves). Live events are executed once per audience; a subscription that selects one
 * of these gets an audience of its own viewer. On an object type, every field of it counts.
 */
export const viewerDependent = { viewerDependent: true } as const;

export function isViewerDependent(field: GraphQLField<unknown, unknown> | null | undefined): boolean {
  return field?.extensions?.viewerDependent === true;
}

const selectsViewerDependent = new WeakMap<DocumentNode, boolean>();

/** Whether any field the document selects (its fragments included) depends on the viewer. */
export function documentIsViewerDependent(schema: GraphQLSchema, document: DocumentNode): boolean {
  const known = selectsViewerDependent.get(document);
  if (known !== undefined) return known;
  const typeInfo = new TypeInfo(schema);
  let found = false;
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      [Kind.FIELD]() {
        const parent = typeInfo.getParentType();
        if (isViewerDependent(typeInfo.getFieldDef()) || parent?.extensions?.viewerDependent === true) found = true;
      },
    }),
  );
  selectsViewerDependent.set(document, found);
  return found;
}
