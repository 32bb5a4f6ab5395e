import { create, createFileRegistry, type DescMessage } from "@bufbuild/protobuf";
import {
  DurationSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ResourceExhaustedError } from "../common/errors.js";

/**
 * google.rpc.RetryInfo and google.rpc.ErrorInfo, the standard error details (googleapis
 * google/rpc/error_details.proto, field numbers as there) that gRPC and Connect clients read for
 * "retry after" and "why". @bufbuild/protobuf ships only google.protobuf, and the googleapis
 * module is not vendored here, so the two messages are described at run time: the wire form is
 * the same as generated code's.
 */
const { OPTIONAL, REPEATED } = FieldDescriptorProto_Label;
const { STRING, MESSAGE } = FieldDescriptorProto_Type;
const errorDetails = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "google/rpc/error_details.proto",
    package: "google.rpc",
    syntax: "proto3",
    dependency: ["google/protobuf/duration.proto"],
    messageType: [
      { name: "RetryInfo", field: [{ name: "retry_delay", jsonName: "retryDelay", number: 1, label: OPTIONAL, type: MESSAGE, typeName: ".google.protobuf.Duration" }] },
      {
        name: "ErrorInfo",
        field: [
          { name: "reason", jsonName: "reason", number: 1, label: OPTIONAL, type: STRING },
          { name: "domain", jsonName: "domain", number: 2, label: OPTIONAL, type: STRING },
          { name: "metadata", jsonName: "metadata", number: 3, label: REPEATED, type: MESSAGE, typeName: ".google.rpc.ErrorInfo.MetadataEntry" },
        ],
        nestedType: [
          {
            name: "MetadataEntry",
            options: { mapEntry: true },
            field: [
              { name: "key", jsonName: "key", number: 1, label: OPTIONAL, type: STRING },
              { name: "value", jsonName: "value", number: 2, label: OPTIONAL, type: STRING },
            ],
          },
        ],
      },
    ],
  }),
  (name) => (name === "google/protobuf/duration.proto" ? file_google_protobuf_duration : undefined),
);

export const RetryInfoSchema: DescMessage = errorDetails.getMessage("google.rpc.RetryInfo")!;
export const ErrorInfoSchema: DescMessage = errorDetails.getMessage("google.rpc.ErrorInfo")!;

/** ErrorInfo.domain of Rendition's own reasons. */
export const ERROR_DOMAIN = "rendition.v1";

/**
 * RESOURCE_EXHAUSTED (HTTP 429 in the Connect protocol) with the retry hint three ways: in the
 * message, as google.rpc.RetryInfo, and as a `Retry-After` header in whole seconds (a response
 * header for Connect unary calls, a trailer for gRPC and streams), plus google.rpc.ErrorInfo
 * naming the limit (`reason`) and its figures (`metadata`).
 */
export function resourceExhausted(err: ResourceExhaustedError): ConnectError {
  const ms = Math.max(1, Math.ceil(err.retryAfterMs));
  const retryDelay = create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
  return new ConnectError(
    err.message,
    Code.ResourceExhausted,
    { "retry-after": String(Math.ceil(ms / 1000)) },
    [
      { desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay }) },
      { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: err.reason, domain: ERROR_DOMAIN, metadata: err.metadata }) },
    ],
    err,
  );
}
