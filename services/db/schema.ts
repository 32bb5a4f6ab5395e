import type { ColumnType, Generated, Insertable, Selectable, Updateable } from "kysely";

/** Kysely table types; they mirror migrations/*.ts. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type NullableBigInt = ColumnType<string | null, number | bigint | string | null | undefined, number | bigint | string | null>;
type Json<T> = ColumnType<T, string, string>;
type NullableJson<T> = ColumnType<T | null, string | null | undefined, string | null>;

export interface OrganizationsTable {
  id: string;
  name: string;
  created_at: Generated<Timestamp>;
}

export interface ApiKeysTable {
  id: string;
  organization_id: string;
  name: string;
  /** First characters of the key, shown in listings so a person can tell keys apart. */
  display_prefix: string;
  /** Hex SHA-256 of the whole key; the key itself is never stored. */
  key_digest: string;
  created_at: Generated<Timestamp>;
  revoked_at: NullableTimestamp;
  last_used_at: NullableTimestamp;
}

export interface OriginsTable {
  id: string;
  organization_id: string;
  name: string;
  description: string;
  provider: "s3" | "http" | "local";
  can_read: boolean;
  can_write: boolean;
  status: "active" | "failed" | "archived";
  base_path: string;
  path_template: string;
  /** Public location (bucket, region, endpoint, base URL, header names, root dir). */
  location: Json<Record<string, unknown>>;
  /** AES-256-GCM token of the secrets (S3 keys, HTTP header values); null when there are none. */
  credentials: string | null;
  last_validated_at: NullableTimestamp;
  validation_error: string;
  archived_at: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface PresetsTable {
  id: string;
  organization_id: string;
  slug: string;
  name: string;
  description: string;
  /** PresetSpec in proto3 JSON. */
  spec: Json<unknown>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface JobsTable {
  id: string;
  organization_id: string;
  status: string;
  progress: Generated<number>;
  priority: string;
  input_url: string;
  input_origin_id: string | null;
  input_path: string;
  /** JobOrigin snapshots (proto3 JSON) taken at creation. */
  input_origin: NullableJson<unknown>;
  output_origin_id: string;
  output_origin: Json<unknown>;
  input_metadata: NullableJson<unknown>;
  estimated_cost_minor: NullableBigInt;
  actual_cost_minor: NullableBigInt;
  currency: string;
  error_code: Generated<string>;
  error_message: Generated<string>;
  webhook_url: string;
  metadata: Json<Record<string, string>>;
  delayed_start: boolean;
  execution: NullableJson<unknown>;
  idempotency_key: string | null;
  /** SHA-256 of the canonical request, to tell a retry from a different request with the same key. */
  request_digest: string;
  /** Lease token: bumped by every stage transition so late messages can be told apart. */
  attempt: Generated<number>;
  /** Worker holding the job while it runs a stage; '' when none. */
  lease_owner: Generated<string>;
  /** The lease ends here unless renewed; another worker may then take the job over. */
  lease_expires_at: NullableTimestamp;
  /** How many times a worker took the job (Execution.attempts). */
  claims: Generated<number>;
  /** The last transient failure, kept for the message when retries run out. */
  last_error: Generated<string>;
  created_at: Timestamp;
  updated_at: Timestamp;
  probed_at: NullableTimestamp;
  started_at: NullableTimestamp;
  completed_at: NullableTimestamp;
  confirmed_at: NullableTimestamp;
}

export interface JobOutputsTable {
  id: string;
  job_id: string;
  position: number;
  type: string;
  status: string;
  /** The resolved OutputSpec (proto3 JSON), preset already applied. */
  spec: Json<unknown>;
  preset_id: string;
  path: string;
  output_url: Generated<string>;
  /** Streaming outputs: URLs of the master playlist / MPD and the media playlists. */
  manifest_urls: ColumnType<string[], string | undefined, string>;
  /** WebVTT renditions of streaming outputs and extracted subtitle sidecars. */
  subtitle_urls: ColumnType<string[], string | undefined, string>;
  file_size_bytes: NullableBigInt;
  duration_ms: NullableBigInt;
  progress: Generated<number>;
  error_code: Generated<string>;
  error_message: Generated<string>;
  estimated_cost_minor: NullableBigInt;
  actual_cost_minor: NullableBigInt;
}

export interface JobThumbnailsTable {
  id: string;
  job_id: string;
  position: number;
  status: string;
  spec: Json<unknown>;
  path: string;
  urls: Json<string[]>;
  storyboard_url: Generated<string>;
  error_message: Generated<string>;
}

export interface OutboxTable {
  id: string;
  job_id: string;
  /** What the message asks for, e.g. "job.probe", "job.encode". */
  topic: string;
  payload: Json<Record<string, unknown>>;
  created_at: Generated<Timestamp>;
  sent_at: NullableTimestamp;
}

export interface UploadsTable {
  id: string;
  organization_id: string;
  origin_id: string;
  provider: "s3" | "local";
  /** The path the caller's job names (input_path), relative to the origin's base path. */
  path: string;
  /** base path + path: what the storage driver is given. */
  object_path: string;
  content_type: string;
  size_bytes: ColumnType<string, number | bigint | string, number | bigint | string>;
  /** S3 multipart uploads: the UploadId; '' for single PUTs. */
  multipart_upload_id: string;
  part_size_bytes: NullableBigInt;
  state: "pending" | "uploading" | "completed" | "aborted";
  received_bytes: NullableBigInt;
  expires_at: Timestamp;
  created_at: Timestamp;
  completed_at: NullableTimestamp;
}

export interface Database {
  organizations: OrganizationsTable;
  api_keys: ApiKeysTable;
  origins: OriginsTable;
  presets: PresetsTable;
  jobs: JobsTable;
  job_outputs: JobOutputsTable;
  job_thumbnails: JobThumbnailsTable;
  outbox: OutboxTable;
  uploads: UploadsTable;
}

export type JobRow = Selectable<JobsTable>;
export type NewJobRow = Insertable<JobsTable>;
export type JobRowUpdate = Updateable<JobsTable>;
export type JobOutputRow = Selectable<JobOutputsTable>;
export type JobThumbnailRow = Selectable<JobThumbnailsTable>;
export type OriginRow = Selectable<OriginsTable>;
export type PresetRow = Selectable<PresetsTable>;
export type ApiKeyRow = Selectable<ApiKeysTable>;
export type UploadRow = Selectable<UploadsTable>;
