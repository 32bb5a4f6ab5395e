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
  /** A rolled key stops working here (its grace period); null: no expiry. */
  expires_at: NullableTimestamp;
  /** A test key (rnd_test_...): its jobs are test jobs. */
  test: Generated<boolean>;
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
  /** Created with a test key: costs are 0, usage counts it apart. */
  test: Generated<boolean>;
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

/** A piece of a chunked job's work (migration 0007): a chunk to encode, or the final assembly. */
export interface JobTasksTable {
  id: string;
  job_id: string;
  kind: "chunk" | "assemble";
  position: number;
  status: Generated<"pending" | "running" | "completed" | "failed" | "canceled">;
  /** The task's lease token: bumped by every claim and by Cancel. */
  attempt: Generated<number>;
  claims: Generated<number>;
  lease_owner: Generated<string>;
  lease_expires_at: NullableTimestamp;
  last_error: Generated<string>;
  spec: Json<Record<string, unknown>>;
  result: NullableJson<Record<string, unknown>>;
  progress: Generated<number>;
  created_at: Timestamp;
  updated_at: Timestamp;
  completed_at: NullableTimestamp;
}

export interface WebhookEndpointsTable {
  id: string;
  organization_id: string;
  url: string;
  description: string;
  /** Event types sent; empty = all. */
  event_types: Json<string[]>;
  status: "enabled" | "disabled";
  disabled_reason: Generated<string>;
  /** AES-256-GCM token of { secret }. */
  secret: string;
  secret_prefix: string;
  previous_secret: string | null;
  previous_secret_expires_at: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface OrganizationWebhookSecretsTable {
  organization_id: string;
  secret: string;
  secret_prefix: string;
  previous_secret: string | null;
  previous_secret_expires_at: NullableTimestamp;
  updated_at: Timestamp;
}

export interface WebhookEventsTable {
  /** Sent as webhook-id. */
  id: string;
  organization_id: string;
  job_id: string | null;
  type: string;
  /** The exact body sent (signed bytes), so every attempt and redelivery sends the same. */
  payload: string;
  created_at: Timestamp;
}

export interface WebhookDeliveriesTable {
  id: string;
  /** Insertion order: a job's deliveries to one target go out in this order. */
  seq: Generated<string>;
  event_id: string;
  organization_id: string;
  job_id: string | null;
  endpoint_id: string | null;
  /** The endpoint id, or "job_url" for the job's own webhook_url: the unit of ordering. */
  target: string;
  url: string;
  status: "pending" | "delivered" | "failed";
  attempt_count: Generated<number>;
  next_attempt_at: Timestamp;
  lease_expires_at: NullableTimestamp;
  delivered_at: NullableTimestamp;
  created_at: Timestamp;
}

export interface WebhookAttemptsTable {
  id: Generated<string>;
  delivery_id: string;
  attempted_at: Timestamp;
  state: Generated<"sending" | "done">;
  response_status: Generated<number>;
  latency_ms: Generated<number>;
  response_snippet: Generated<string>;
  error: Generated<string>;
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
  webhook_endpoints: WebhookEndpointsTable;
  organization_webhook_secrets: OrganizationWebhookSecretsTable;
  webhook_events: WebhookEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  uploads: UploadsTable;
  job_tasks: JobTasksTable;
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
