import { describe, expect, it } from "vitest";
import { create, createFileRegistry, fromJsonString, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { ConnectError, Code } from "@connectrpc/connect";
import { JobStatus, OutputType, Priority, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, JobServiceListRequestSchema, ImageFormat, ThumbnailMode } from "../../gen/rendition/v1/job_pb.js";
import { OriginPermission, OriginServiceCreateRequestSchema } from "../../gen/rendition/v1/origin_pb.js";
import { JobStatusSchema, ResolutionSchema } from "../../gen/rendition/v1/common_pb.js";
import { enumAliasDecoder, enumAliases, rewriteEnumAliases } from "../../services/api/enum-aliases.js";

/** A message with every shape an enum can sit in: map values, a real oneof, maps of messages, repeated. */
const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "shapes.proto",
    package: "shapes",
    syntax: "proto3",
    enumType: [{ name: "ColorTone", value: [{ name: "COLOR_TONE_UNSPECIFIED", number: 0 }, { name: "COLOR_TONE_DARK_RED", number: 1 }, { name: "COLOR_TONE_4K", number: 2 }] }],
    messageType: [
      { name: "Leaf", field: [{ name: "tone", number: 1, type: Type.ENUM, typeName: ".shapes.ColorTone", label: Label.OPTIONAL, jsonName: "tone" }] },
      {
        name: "Shapes",
        field: [
          { name: "by_name", number: 1, type: Type.MESSAGE, typeName: ".shapes.Shapes.ByNameEntry", label: Label.REPEATED, jsonName: "byName" },
          { name: "leaves_by_name", number: 2, type: Type.MESSAGE, typeName: ".shapes.Shapes.LeavesByNameEntry", label: Label.REPEATED, jsonName: "leavesByName" },
          { name: "picked_tone", number: 3, type: Type.ENUM, typeName: ".shapes.ColorTone", label: Label.OPTIONAL, oneofIndex: 0, jsonName: "pickedTone" },
          { name: "picked_leaf", number: 4, type: Type.MESSAGE, typeName: ".shapes.Leaf", label: Label.OPTIONAL, oneofIndex: 0, jsonName: "pickedLeaf" },
          { name: "tones", number: 5, type: Type.ENUM, typeName: ".shapes.ColorTone", label: Label.REPEATED, jsonName: "tones" },
          { name: "note", number: 6, type: Type.STRING, label: Label.OPTIONAL, jsonName: "note" },
        ],
        oneofDecl: [{ name: "choice" }],
        nestedType: [
          {
            name: "ByNameEntry",
            options: { mapEntry: true },
            field: [
              { name: "key", number: 1, type: Type.STRING, label: Label.OPTIONAL, jsonName: "key" },
              { name: "value", number: 2, type: Type.ENUM, typeName: ".shapes.ColorTone", label: Label.OPTIONAL, jsonName: "value" },
            ],
          },
          {
            name: "LeavesByNameEntry",
            options: { mapEntry: true },
            field: [
              { name: "key", number: 1, type: Type.STRING, label: Label.OPTIONAL, jsonName: "key" },
              { name: "value", number: 2, type: Type.MESSAGE, typeName: ".shapes.Leaf", label: Label.OPTIONAL, jsonName: "value" },
            ],
          },
        ],
      },
    ],
  }),
  () => undefined,
);
const ShapesSchema = registry.getMessage("shapes.Shapes")!;

describe("enumAliases", () => {
  it("strips the enum's own prefix and lower-cases, digits and multi-word names included", () => {
    expect(enumAliases(ResolutionSchema).get("1080p")).toBe("RESOLUTION_1080P");
    expect(enumAliases(JobStatusSchema).get("awaiting_confirmation")).toBe("JOB_STATUS_AWAITING_CONFIRMATION");
    expect(enumAliases(registry.getEnum("shapes.ColorTone")!).get("dark_red")).toBe("COLOR_TONE_DARK_RED");
    expect(enumAliases(registry.getEnum("shapes.ColorTone")!).get("4k")).toBe("COLOR_TONE_4K");
    // Only the lower-case spelling is an alias.
    expect(enumAliases(ResolutionSchema).get("1080P")).toBeUndefined();
  });
});

describe("rewriteEnumAliases", () => {
  it("rewrites every enum field of a Create request, by proto or JSON name, leaving canonical names and numbers", () => {
    const input: JsonObject = {
      priority: "premium",
      outputs: [
        { type: "mp4", video: [{ codec: "h264", resolution: "720p", quality: "standard" }, { codec: "VIDEO_CODEC_H265", resolution: 5 }] },
        { type: "hls", contentType: "film", audio: [{ settings: { codec: "aac" } }] },
      ],
      thumbnails: [{ mode: "sprite", format: "webp" }],
      metadata: { type: "mp4" },
    };
    const snapshot = structuredClone(input);
    const { json, violations } = rewriteEnumAliases(JobServiceCreateRequestSchema, input);
    expect(violations).toEqual([]);
    expect(input).toEqual(snapshot); // pure: the input is left as it was
    expect(json).toEqual({
      priority: "PRIORITY_PREMIUM",
      outputs: [
        {
          type: "OUTPUT_TYPE_MP4",
          video: [
            { codec: "VIDEO_CODEC_H264", resolution: "RESOLUTION_720P", quality: "QUALITY_STANDARD" },
            { codec: "VIDEO_CODEC_H265", resolution: 5 },
          ],
        },
        { type: "OUTPUT_TYPE_HLS", contentType: "CONTENT_TYPE_FILM", audio: [{ settings: { codec: "AUDIO_CODEC_AAC" } }] },
      ],
      thumbnails: [{ mode: "THUMBNAIL_MODE_SPRITE", format: "IMAGE_FORMAT_WEBP" }],
      // A map<string, string> value is a string, not an enum.
      metadata: { type: "mp4" },
    });
    const message = fromJsonString(JobServiceCreateRequestSchema, JSON.stringify(json));
    expect(message.priority).toBe(Priority.PREMIUM);
    expect(message.outputs[0]!.type).toBe(OutputType.MP4);
    expect(message.outputs[0]!.video[0]!.codec).toBe(VideoCodec.H264);
    expect(message.outputs[0]!.video[0]!.resolution).toBe(Resolution.RESOLUTION_720P);
    expect(message.thumbnails[0]!.mode).toBe(ThumbnailMode.SPRITE);
    expect(message.thumbnails[0]!.format).toBe(ImageFormat.WEBP);
  });

  it("returns the very same tree when there is nothing to rewrite", () => {
    const input = { status: "JOB_STATUS_PROCESSING", pagination: { limit: 20 } };
    expect(rewriteEnumAliases(JobServiceListRequestSchema, input).json).toBe(input);
  });

  it("covers repeated enums, map values (enums and messages) and oneof members", () => {
    const { json, violations } = rewriteEnumAliases(ShapesSchema, {
      byName: { a: "dark_red", b: "COLOR_TONE_4K" },
      leaves_by_name: { x: { tone: "4k" } },
      pickedLeaf: { tone: "dark_red" },
      tones: ["dark_red", 2, "unspecified"],
      note: "dark_red",
    });
    expect(violations).toEqual([]);
    expect(json).toEqual({
      byName: { a: "COLOR_TONE_DARK_RED", b: "COLOR_TONE_4K" },
      leaves_by_name: { x: { tone: "COLOR_TONE_4K" } },
      pickedLeaf: { tone: "COLOR_TONE_DARK_RED" },
      tones: ["COLOR_TONE_DARK_RED", 2, "COLOR_TONE_UNSPECIFIED"],
      note: "dark_red",
    });
    expect(rewriteEnumAliases(ShapesSchema, { picked_tone: "dark_red" }).json).toEqual({ picked_tone: "COLOR_TONE_DARK_RED" });
    const shapes = fromJsonString(ShapesSchema, JSON.stringify(json), { registry });
    expect(shapes).toBeDefined();
  });

  it("names every unknown spelling by its field path, and leaves unknown keys for fromJson", () => {
    const { violations } = rewriteEnumAliases(JobServiceCreateRequestSchema, {
      outputs: [{ type: "mp5", video: [{ codec: "h264" }, { codec: "H264", resolution: "1080P" }] }],
      unknown_key: "mp5",
    });
    expect(violations.map((v) => [v.field, v.rule])).toEqual([
      ["outputs[0].type", "enum.name"],
      ["outputs[0].video[1].codec", "enum.name"],
      ["outputs[0].video[1].resolution", "enum.name"],
    ]);
    expect(violations[0]!.message).toContain("mp4, webm");
    const shapes = rewriteEnumAliases(ShapesSchema, { byName: { "a b": "pink" }, tones: ["dark_red", "pink"] });
    expect(shapes.violations.map((v) => v.field)).toEqual(['by_name["a b"]', "tones[1]"]);
  });

  it("handles repeated enums of request messages (origin permissions)", () => {
    const { json } = rewriteEnumAliases(OriginServiceCreateRequestSchema, { permissions: ["read", "write"] });
    expect(fromJsonString(OriginServiceCreateRequestSchema, JSON.stringify(json)).permissions).toEqual([OriginPermission.READ, OriginPermission.WRITE]);
  });
});

describe("enumAliasDecoder", () => {
  const decode = (schema: Parameters<typeof enumAliasDecoder>[0], json: JsonValue | string) =>
    enumAliasDecoder(schema).decode(new TextEncoder().encode(typeof json === "string" ? json : JSON.stringify(json)));

  it("hands fromJson the canonical names, the untouched text when nothing changed, and malformed JSON as it came", () => {
    expect(JSON.parse(decode(JobServiceListRequestSchema, { status: "processing" }))).toEqual({ status: "JOB_STATUS_PROCESSING" });
    expect(fromJsonString(JobServiceListRequestSchema, decode(JobServiceListRequestSchema, { status: "processing" })).status).toBe(JobStatus.PROCESSING);
    const canonical = '{ "status" : "JOB_STATUS_PENDING" }';
    expect(decode(JobServiceListRequestSchema, canonical)).toBe(canonical);
    expect(decode(JobServiceListRequestSchema, "{")).toBe("{");
  });

  it("refuses an unknown spelling with invalid_argument carrying the violations", () => {
    let error: unknown;
    try {
      decode(JobServiceListRequestSchema, { status: "running" });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    expect((error as ConnectError).rawMessage).toMatch(/^1 invalid field: status: unknown value "running"/);
  });
});
