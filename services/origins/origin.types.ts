import type { Provider } from "../storage/storage-driver.js";

export type OriginStatus = "active" | "failed" | "archived";
export type Permission = "read" | "write";

/** Public location of an origin: everything but secrets. */
export interface OriginLocation {
  s3?: { bucket: string; region: string; endpoint: string; forcePathStyle: boolean };
  http?: { baseUrl: string; headerNames: string[] };
  local?: { rootDir: string };
}

/** Secrets, stored encrypted. */
export interface OriginSecrets {
  s3?: { accessKeyId: string; secretAccessKey: string };
  httpHeaders?: Record<string, string>;
}

export interface OriginRecord {
  id: string;
  organizationId: string;
  name: string;
  description: string;
  provider: Provider;
  canRead: boolean;
  canWrite: boolean;
  status: OriginStatus;
  basePath: string;
  pathTemplate: string;
  location: OriginLocation;
  /** Encrypted OriginSecrets, or null. */
  credentials: string | null;
  lastValidatedAt: Date | null;
  validationError: string;
  archivedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface CreateOriginInput {
  name: string;
  description: string;
  permissions: Permission[];
  basePath: string;
  pathTemplate: string;
  s3?: { bucket: string; region: string; endpoint: string; forcePathStyle: boolean };
  s3Credentials?: { accessKeyId: string; secretAccessKey: string };
  http?: { baseUrl: string };
  httpHeaders: Record<string, string>;
  local?: { rootDir: string };
}

export interface UpdateOriginInput {
  name?: string;
  description?: string;
  pathTemplate?: string;
  s3Credentials?: { accessKeyId: string; secretAccessKey: string };
}
