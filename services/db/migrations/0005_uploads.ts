import type { Kysely } from "kysely";
import { runStatements } from "./run-statements.js";

// Uploads of job inputs through signed URLs. A local upload's token is single-use: the row's
// state moves pending -> uploading (while the body streams) -> completed, or back to pending when
// the transfer fails; an S3 multipart upload keeps its UploadId here for CompleteUpload/AbortUpload.
export async function up(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    CREATE TABLE uploads (
      id text PRIMARY KEY,
      organization_id text NOT NULL REFERENCES organizations(id),
      origin_id text NOT NULL REFERENCES origins(id),
      provider text NOT NULL,
      path text NOT NULL,
      object_path text NOT NULL,
      content_type text NOT NULL DEFAULT '',
      size_bytes bigint NOT NULL,
      multipart_upload_id text NOT NULL DEFAULT '',
      part_size_bytes bigint,
      state text NOT NULL CHECK (state IN ('pending', 'uploading', 'completed', 'aborted')),
      received_bytes bigint,
      expires_at timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      completed_at timestamptz
    );
    CREATE INDEX uploads_organization_idx ON uploads (organization_id, id);
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    DROP TABLE uploads;
  `);
}
