/**
 * The JSON the API writes: proto field names (snake_case, like the reference) and zero values
 * spelled out (progress: 0, error_code: ""). Webhook payloads use it too, so a payload reads
 * exactly like Get's answer.
 */
export const API_JSON_WRITE = { useProtoFieldName: true, alwaysEmitImplicit: true } as const;

/** Requests: a misspelled field or enum name is an error instead of being silently dropped. */
export const API_JSON = { ...API_JSON_WRITE, ignoreUnknownFields: false } as const;
