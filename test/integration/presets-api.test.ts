import { create, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

import { AudioCodec, OutputType, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema } from "../../gen/rendition/v1/job_pb.js";
import {
  Container,
  DeliveryFormat,
  PresetService,
  PresetSpecSchema,
  type Preset,
} from "../../gen/rendition/v1/preset_pb.js";
import { newId } from "../../services/common/ids.js";
import { BASE_MICROS_PER_MINUTE, CODEC_MULTIPLIER, RESOLUTION_MULTIPLIER } from "../../services/pricing/pricing.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectError, violationsOf } from "../support/rpc.js";

let database: TestDatabase;
let api: TestApi;

beforeAll(async () => {
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url);
});
afterAll(async () => {
  await api?.close();
  await database?.drop();
});

type SpecInit = Omit<MessageInitShape<typeof PresetSpecSchema>, "$typeName">;

async function invalid(promise: Promise<unknown>) {
  const err = await connectError(promise);
  expect(err.code, err.rawMessage).toBe(Code.InvalidArgument);
  return violationsOf(err);
}

/** MKV, H.265 720p60 (quality from the preset's tier), AAC 192 kbps. 0.40 x 1.5 x 0.75 x 60/30 = 0.90 per minute. */
const mkvSpec: SpecInit = {
  container: Container.MKV,
  video: [{ codec: VideoCodec.H265, resolution: Resolution.RESOLUTION_720P, framerate: 60 }],
  audio: { codec: AudioCodec.AAC, bitrateKbps: 192, sampleRate: 48000, channels: 2 },
  quality: Quality.PREMIUM,
};

let slugCounter = 0;
function uniqueSlug(base: string): string {
  return `${base}_${++slugCounter}`;
}

async function createPreset(slug: string, spec: SpecInit = mkvSpec, name = `Preset ${slug}`): Promise<Preset> {
  const { preset } = await api.presets.create({ slug, name, spec });
  return preset!;
}

function jobRequest(outputs: MessageInitShape<typeof JobServiceCreateRequestSchema>["outputs"]) {
  return create(JobServiceCreateRequestSchema, {
    inputOriginId: api.credentials.local_origin_id,
    inputPath: "uploads/in.mp4",
    outputOriginId: api.credentials.local_origin_id,
    outputs,
  });
}

/** The expected per-minute rate from the pricing table: base x codec x resolution, summed over variants. */
function tableRate(preset: Preset): string {
  const codec = { [VideoCodec.H264]: "h264", [VideoCodec.H265]: "h265", [VideoCodec.VP9]: "vp9", [VideoCodec.AV1]: "av1" } as const;
  const tier = {
    [Resolution.RESOLUTION_480P]: "480p",
    [Resolution.RESOLUTION_720P]: "720p",
    [Resolution.RESOLUTION_1080P]: "1080p",
    [Resolution.RESOLUTION_1440P]: "1440p",
    [Resolution.RESOLUTION_2160P]: "2160p",
    [Resolution.RESOLUTION_4320P]: "4320p",
  } as const;
  const micros = preset.spec!.video.reduce(
    (sum, v) =>
      sum +
      BASE_MICROS_PER_MINUTE *
        CODEC_MULTIPLIER[codec[v.codec as keyof typeof codec]] *
        RESOLUTION_MULTIPLIER[tier[v.resolution as keyof typeof tier]] *
        ((v.framerate || 30) / 30),
    0,
  );
  return (micros / 1_000_000).toFixed(2);
}

describe("system presets", () => {
  const EXPECTED_RATES: Record<string, string> = {
    h264_1080p_standard: "0.40",
    h264_720p_economy: "0.30", // 0.40 x 0.75
    vp9_1080p_standard: "0.52", // 0.40 x 1.3
    av1_1080p_premium: "1.00", // 0.40 x 2.5 (the quality tier is not a price factor; priority is)
    hls_ladder_standard: "0.90", // 0.40 x (1 + 0.75 + 0.5)
  };

  it("are listed first, flagged system_preset, with the pricing table's per-minute rate", async () => {
    await createPreset(uniqueSlug("listed_after_systems"));
    const { presets, pagination } = await api.presets.list({ pagination: { limit: 100 } });
    const firstOwn = presets.findIndex((p) => !p.systemPreset);
    const lastSystem = presets.map((p) => p.systemPreset).lastIndexOf(true);
    expect(firstOwn).toBeGreaterThan(0);
    expect(lastSystem).toBe(firstOwn - 1);
    const systems = presets.slice(0, firstOwn);
    expect(systems.map((p) => p.slug)).toEqual(expect.arrayContaining(Object.keys(EXPECTED_RATES)));
    expect(systems.map((p) => p.slug).slice(0, 2)).toEqual(["h264_1080p_standard", "h264_720p_economy"]);
    for (const [slug, rate] of Object.entries(EXPECTED_RATES)) {
      const preset = systems.find((p) => p.slug === slug)!;
      expect(preset, slug).toMatchObject({ id: `pst_system_${slug}`, systemPreset: true, estimatedCostPerMinute: rate, currency: "EUR" });
    }
    for (const preset of systems) {
      expect(preset.estimatedCostPerMinute, preset.slug).toBe(tableRate(preset));
      expect(preset.spec!.video.length).toBeGreaterThan(0);
      expect(preset.name).not.toBe("");
    }
    expect(pagination!.totalCount).toBe(presets.length);
  });

  it("are found by id and by slug, with their spec", async () => {
    const bySlug = (await api.presets.get({ idOrSlug: "hls_ladder_standard" })).preset!;
    const byId = (await api.presets.get({ idOrSlug: "pst_system_hls_ladder_standard" })).preset!;
    expect(byId).toEqual(bySlug);
    expect(bySlug).toMatchObject({
      slug: "hls_ladder_standard",
      systemPreset: true,
      estimatedCostPerMinute: "0.90",
      spec: { container: Container.MP4, deliveryFormat: DeliveryFormat.HLS, quality: Quality.STANDARD },
    });
    expect(bySlug.spec!.video.map((v) => v.resolution)).toEqual([Resolution.RESOLUTION_1080P, Resolution.RESOLUTION_720P, Resolution.RESOLUTION_480P]);
    const vp9 = (await api.presets.get({ idOrSlug: "vp9_1080p_standard" })).preset!;
    expect(vp9.spec).toMatchObject({ container: Container.WEBM, audio: { codec: AudioCodec.OPUS } });
    expect((await connectError(api.presets.get({ idOrSlug: "no_such_preset" }))).code).toBe(Code.NotFound);
  });

  it("are read-only: Update and Delete answer FAILED_PRECONDITION by id and by slug", async () => {
    for (const id of ["pst_system_h264_1080p_standard", "h264_1080p_standard"]) {
      const update = await connectError(api.presets.update({ id, name: "mine now" }));
      expect(update.code, id).toBe(Code.FailedPrecondition);
      expect(update.rawMessage).toContain("read-only");
      const del = await connectError(api.presets.delete({ id }));
      expect(del.code, id).toBe(Code.FailedPrecondition);
    }
    expect((await api.presets.get({ idOrSlug: "h264_1080p_standard" })).preset!.name).toBe("H.264 1080p standard");
  });
});

describe("organization presets", () => {
  it("creates, gets by id and slug, updates name and replaces the spec, deletes", async () => {
    const slug = uniqueSlug("web_mkv");
    const before = Date.now();
    const created = await createPreset(slug, mkvSpec, "Web MKV");
    expect(created.id).toMatch(/^pst_[0-9a-z]{26}$/);
    expect(created).toMatchObject({
      slug,
      name: "Web MKV",
      systemPreset: false,
      estimatedCostPerMinute: "0.90",
      currency: "EUR",
      spec: { container: Container.MKV, quality: Quality.PREMIUM, audio: { codec: AudioCodec.AAC, bitrateKbps: 192 } },
    });
    expect(timestampDate(created.createdAt!).getTime()).toBeGreaterThanOrEqual(before - 1000);

    const byId = (await api.presets.get({ idOrSlug: created.id })).preset!;
    const bySlug = (await api.presets.get({ idOrSlug: slug })).preset!;
    expect(byId).toEqual(created);
    expect(bySlug).toEqual(created);

    const renamed = (await api.presets.update({ id: created.id, name: "Web MKV v2", description: "for the site" })).preset!;
    expect(renamed).toMatchObject({ id: created.id, slug, name: "Web MKV v2", description: "for the site", spec: created.spec });
    expect(timestampDate(renamed.updatedAt!).getTime()).toBeGreaterThanOrEqual(timestampDate(created.updatedAt!).getTime());

    // The spec is replaced as a whole: the audio settings not sent are gone.
    const replaced = (
      await api.presets.update({
        id: created.id,
        spec: {
          container: Container.MP4,
          deliveryFormat: DeliveryFormat.DASH,
          video: [
            { codec: VideoCodec.AV1, resolution: Resolution.RESOLUTION_1080P },
            { codec: VideoCodec.AV1, resolution: Resolution.RESOLUTION_720P },
          ],
        },
      })
    ).preset!;
    expect(replaced).toMatchObject({ name: "Web MKV v2", spec: { container: Container.MP4, deliveryFormat: DeliveryFormat.DASH } });
    expect(replaced.spec!.audio).toBeUndefined();
    expect(replaced.spec!.video).toHaveLength(2);
    expect(replaced.estimatedCostPerMinute).toBe("1.75"); // 0.40 x 2.5 x (1 + 0.75)
    expect((await api.presets.get({ idOrSlug: slug })).preset).toEqual(replaced);

    await api.presets.delete({ id: created.id });
    expect((await connectError(api.presets.get({ idOrSlug: created.id }))).code).toBe(Code.NotFound);
    expect((await connectError(api.presets.get({ idOrSlug: slug }))).code).toBe(Code.NotFound);
    expect((await connectError(api.presets.delete({ id: created.id }))).code).toBe(Code.NotFound);
    expect((await connectError(api.presets.update({ id: created.id, name: "ghost" }))).code).toBe(Code.NotFound);
    // The slug is free again.
    expect((await createPreset(slug)).slug).toBe(slug);
  });

  it("enforces slug rules: pattern, reserved system slugs, uniqueness (ALREADY_EXISTS)", async () => {
    for (const slug of ["Web-HD", "", "a".repeat(65), "has space"]) {
      const violations = await invalid(api.presets.create({ slug, name: "x", spec: mkvSpec }));
      expect(violations, JSON.stringify(slug)).toEqual([expect.objectContaining({ field: "slug", rule: "string.pattern" })]);
    }
    const reserved = await invalid(api.presets.create({ slug: "h264_1080p_standard", name: "x", spec: mkvSpec }));
    expect(reserved).toEqual([{ field: "slug", rule: "preset.slug_reserved", message: '"h264_1080p_standard" is the slug of a system preset' }]);

    const slug = uniqueSlug("dup");
    await createPreset(slug);
    const dup = await connectError(api.presets.create({ slug, name: "again", spec: mkvSpec }));
    expect(dup.code).toBe(Code.AlreadyExists);
    expect(dup.rawMessage).toContain(slug);
    const rows = await database.db.selectFrom("presets").select("id").where("slug", "=", slug).execute();
    expect(rows).toHaveLength(1);
  });

  it("validates the spec on Create and Update", async () => {
    const webmH264 = await invalid(
      api.presets.create({ slug: uniqueSlug("webm"), name: "x", spec: { container: Container.WEBM, video: [{ codec: VideoCodec.H264 }] } }),
    );
    expect(webmH264).toEqual([
      { field: "spec.video[0].codec", rule: "output.container_video_codec", message: "webm outputs take VIDEO_CODEC_VP9, VIDEO_CODEC_AV1" },
    ]);

    const ts = await invalid(api.presets.create({ slug: uniqueSlug("ts"), name: "x", spec: { container: Container.TS, video: [{ codec: VideoCodec.H264 }] } }));
    expect(ts).toEqual([expect.objectContaining({ field: "spec.container", rule: "preset.container_delivery" })]);

    const ladder = await invalid(
      api.presets.create({
        slug: uniqueSlug("ladder"),
        name: "x",
        spec: { container: Container.MP4, video: [{ codec: VideoCodec.H264 }, { codec: VideoCodec.H264 }] },
      }),
    );
    expect(ladder).toEqual([expect.objectContaining({ field: "spec.video", rule: "output.progressive_single_variant" })]);

    const schema = await invalid(api.presets.create({ slug: uniqueSlug("schema"), name: "", spec: { container: Container.MP4, video: [] } }));
    expect(schema.map((v) => [v.field, v.rule]).sort()).toEqual([
      ["name", "string.min_len"],
      ["spec.video", "repeated.min_items"],
    ]);
    const noSpec = await invalid(api.presets.create({ slug: uniqueSlug("nospec"), name: "x" }));
    expect(noSpec).toEqual([expect.objectContaining({ field: "spec", rule: "required" })]);

    const preset = await createPreset(uniqueSlug("to_break"));
    const update = await invalid(api.presets.update({ id: preset.id, spec: { container: Container.WEBM, video: [{ codec: VideoCodec.H265 }] } }));
    expect(update).toEqual([expect.objectContaining({ field: "spec.video[0].codec", rule: "output.container_video_codec" })]);
    expect((await api.presets.get({ idOrSlug: preset.id })).preset!.spec).toEqual(preset.spec);
  });

  it("is scoped to the organization", async () => {
    const org = await api.app.auth.createOrganization("Other org");
    const key = await api.app.auth.createApiKey(org.id, "other");
    const other = api.client(PresetService, { apiKey: key.key, organizationId: org.id });
    const slug = uniqueSlug("mine");
    const mine = await createPreset(slug);
    expect((await connectError(other.get({ idOrSlug: mine.id }))).code).toBe(Code.NotFound);
    expect((await connectError(other.get({ idOrSlug: slug }))).code).toBe(Code.NotFound);
    expect((await connectError(other.update({ id: mine.id, name: "stolen" }))).code).toBe(Code.NotFound);
    expect((await connectError(other.delete({ id: mine.id }))).code).toBe(Code.NotFound);
    // The same slug is free in another organization; system presets are visible there too.
    expect((await other.create({ slug, name: "theirs", spec: mkvSpec })).preset!.id).not.toBe(mine.id);
    expect((await other.get({ idOrSlug: "h264_1080p_standard" })).preset!.systemPreset).toBe(true);
    const listed = await other.list({ excludeSystem: true });
    expect(listed.presets.map((p) => p.name)).toEqual(["theirs"]);
    expect(listed.pagination!.totalCount).toBe(1);
    expect((await api.presets.get({ idOrSlug: slug })).preset!.id).toBe(mine.id);
  });

  // Preset ids start with pst_ and slugs may not, so Get (and a job output's `preset`) matches a pst_
  // value against ids only and anything else against slugs only: no preset can shadow another's id.
  // (Before, `id = $1 OR slug = $1` answered whichever row the scan met first, which after an update
  // and a table rewrite such as VACUUM FULL was the one whose slug equalled the id.)
  it("refuses a slug equal to another preset's id, and resolves the id to that preset", async () => {
    const real = await createPreset(uniqueSlug("real"), mkvSpec, "Real");
    const webmSpec: SpecInit = { container: Container.WEBM, video: [{ codec: VideoCodec.VP9 }] };
    for (const slug of [real.id, "pst_custom"]) {
      const refused = await invalid(api.presets.create({ slug, name: "Impostor", spec: webmSpec }));
      expect(refused, slug).toEqual([{ field: "slug", rule: "preset.slug_reserved", message: "must not start with pst_, the prefix of preset ids" }]);
    }
    expect(await database.db.selectFrom("presets").select("id").where("name", "=", "Impostor").execute()).toEqual([]);

    // A row that got such a slug before the rule (written to the table directly) does not shadow the
    // real preset either, also after an update and a rewrite of the table.
    const legacyId = newId("pst");
    const now = new Date();
    await database.db
      .insertInto("presets")
      .values({
        id: legacyId,
        organization_id: api.credentials.organization_id,
        slug: real.id,
        name: "Impostor (legacy)",
        description: "",
        spec: JSON.stringify(toJson(PresetSpecSchema, create(PresetSpecSchema, webmSpec))),
        created_at: now,
        updated_at: now,
      })
      .execute();
    await api.presets.update({ id: real.id, name: "Real (renamed)" });
    await sql`VACUUM FULL presets`.execute(database.db);

    expect((await api.presets.get({ idOrSlug: real.id })).preset).toMatchObject({ id: real.id, slug: real.slug, name: "Real (renamed)", spec: { container: Container.MKV } });
    const { job } = await api.jobs.create(jobRequest([{ preset: real.id }]));
    expect(job!.outputs[0]).toMatchObject({ presetId: real.id, type: OutputType.MKV });
    // The legacy row is still found by its own id.
    expect((await api.presets.get({ idOrSlug: legacyId })).preset).toMatchObject({ id: legacyId, name: "Impostor (legacy)" });
    await api.presets.delete({ id: legacyId });
  });
});

describe("PresetService.List pagination", () => {
  it("pages across the system/own boundary with limit 3: every preset exactly once, total_count consistent", async () => {
    for (let i = 0; i < 4; i++) await createPreset(uniqueSlug("page"));
    const own = await database.db
      .selectFrom("presets")
      .select("id")
      .where("organization_id", "=", api.credentials.organization_id)
      .orderBy("id", "desc")
      .execute();
    const systems = (await api.presets.list({ pagination: { limit: 100 } })).presets.filter((p) => p.systemPreset).map((p) => p.id);
    const expected = [...systems, ...own.map((r) => r.id)];

    for (const limit of [3, 1, 2, systems.length, systems.length + 1]) {
      const seen: string[] = [];
      let cursor = "";
      let pages = 0;
      do {
        const page = await api.presets.list({ pagination: { limit, cursor } });
        expect(page.presets.length, `limit ${limit} page ${pages}`).toBeLessThanOrEqual(limit);
        expect(page.pagination!.totalCount).toBe(expected.length);
        if (page.pagination!.nextCursor) expect(page.presets).toHaveLength(limit);
        seen.push(...page.presets.map((p) => p.id));
        cursor = page.pagination!.nextCursor;
        pages++;
        expect(pages).toBeLessThan(200);
      } while (cursor);
      expect(seen, `limit ${limit}`).toEqual(expected);
      expect(new Set(seen).size).toBe(seen.length);
      expect(pages).toBe(Math.ceil(expected.length / limit));
    }

    // Without the system presets.
    const ownSeen: string[] = [];
    let cursor = "";
    do {
      const page = await api.presets.list({ excludeSystem: true, pagination: { limit: 3, cursor } });
      expect(page.presets.every((p) => !p.systemPreset)).toBe(true);
      expect(page.pagination!.totalCount).toBe(own.length);
      ownSeen.push(...page.presets.map((p) => p.id));
      cursor = page.pagination!.nextCursor;
    } while (cursor);
    expect(ownSeen).toEqual(own.map((r) => r.id));

    expect((await connectError(api.presets.list({ pagination: { cursor: "nope" } }))).code).toBe(Code.InvalidArgument);
  });
});

describe("presets in job outputs", () => {
  it("resolves an organization preset by id and by slug to its type, video, audio and preset_id", async () => {
    const slug = uniqueSlug("job_mkv");
    const preset = await createPreset(slug);
    const { job } = await api.jobs.create(jobRequest([{ preset: preset.id }, { preset: slug }]));
    for (const output of job!.outputs) {
      expect(output.type).toBe(OutputType.MKV);
      expect(output.presetId).toBe(preset.id);
      expect(output.video).toHaveLength(1);
      // Variants without a quality take the preset's tier.
      expect(output.video[0]).toMatchObject({ codec: VideoCodec.H265, resolution: Resolution.RESOLUTION_720P, framerate: 60, quality: Quality.PREMIUM });
      expect(output.audio).toHaveLength(1);
      expect(output.audio[0]!.settings).toMatchObject({ codec: AudioCodec.AAC, bitrateKbps: 192 });
      expect(output.path).toBe(`${job!.id}/${output.id}.mkv`);
    }
    // Stored as resolved: the job keeps its spec even after the preset changes or goes away.
    await api.presets.delete({ id: preset.id });
    const reread = (await api.jobs.get({ id: job!.id })).job!;
    expect(reread.outputs[0]).toMatchObject({ type: OutputType.MKV, presetId: preset.id });
    expect(reread.outputs[0]!.video[0]).toMatchObject({ codec: VideoCodec.H265, quality: Quality.PREMIUM });
    const gone = await invalid(api.jobs.create(jobRequest([{ preset: slug }])));
    expect(gone).toEqual([{ field: "outputs[0].preset", rule: "output.preset_not_found", message: `preset ${slug} not found` }]);
  });

  it("lets inline video next to a preset override the preset's variants", async () => {
    const slug = uniqueSlug("override");
    const preset = await createPreset(slug);
    const { job } = await api.jobs.create(jobRequest([{ preset: slug, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P }] }]));
    const output = job!.outputs[0]!;
    expect(output.type).toBe(OutputType.MKV);
    expect(output.presetId).toBe(preset.id);
    expect(output.video).toHaveLength(1);
    expect(output.video[0]).toMatchObject({ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P, framerate: 0, quality: Quality.PREMIUM });
    expect(output.audio[0]!.settings).toMatchObject({ codec: AudioCodec.AAC, bitrateKbps: 192 });

    // An inline ladder on a progressive preset is checked after the preset is applied.
    const ladder = await invalid(
      api.jobs.create(jobRequest([{ preset: slug, video: [{ codec: VideoCodec.H264 }, { codec: VideoCodec.H264 }] }])),
    );
    expect(ladder).toEqual([expect.objectContaining({ field: "outputs[0].video", rule: "output.progressive_single_variant" })]);

    // A streaming system preset with an inline ladder keeps its type and takes the ladder.
    const { job: hls } = await api.jobs.create(
      jobRequest([
        {
          preset: "hls_ladder_standard",
          video: [
            { codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.ECONOMY },
            { codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P },
          ],
        },
      ]),
    );
    expect(hls!.outputs[0]).toMatchObject({ type: OutputType.HLS, presetId: "pst_system_hls_ladder_standard" });
    expect(hls!.outputs[0]!.video.map((v) => [v.resolution, v.quality])).toEqual([
      [Resolution.RESOLUTION_720P, Quality.ECONOMY],
      [Resolution.RESOLUTION_480P, Quality.STANDARD],
    ]);
  });

  it("does not resolve another organization's preset", async () => {
    const org = await api.app.auth.createOrganization("Third org");
    const key = await api.app.auth.createApiKey(org.id, "third");
    const theirs = (await api.client(PresetService, { apiKey: key.key, organizationId: org.id }).create({ slug: "theirs_only", name: "t", spec: mkvSpec })).preset!;
    const violations = await invalid(api.jobs.create(jobRequest([{ preset: theirs.id }, { preset: "theirs_only" }])));
    expect(violations.map((v) => [v.field, v.rule])).toEqual([
      ["outputs[0].preset", "output.preset_not_found"],
      ["outputs[1].preset", "output.preset_not_found"],
    ]);
  });
});
