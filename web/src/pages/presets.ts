/** Presets: the system presets and the organization's own (PresetService.List). */
import { Container, DeliveryFormat, type Preset } from "../../../gen/rendition/v1/preset_pb.js";
import { Quality, VideoCodec } from "../../../gen/rendition/v1/common_pb.js";
import { h } from "../dom.js";
import type { PageContext } from "../main.js";
import { listAllPresets } from "./create.js";

const RESOLUTIONS: Record<number, string> = { 1: "480p", 2: "720p", 3: "1080p", 4: "1440p", 5: "2160p", 6: "4320p" };

export async function presetsPage(ctx: PageContext, root: HTMLElement): Promise<void> {
  ctx.title("Presets");
  const presets = await listAllPresets(ctx.api, ctx.signal);
  root.append(
    h("p", { class: "hint" }, "Name a preset by slug in an output (", h("code", null, '{"preset": "h264_720p_economy"}'), ") or tick it on the Create page."),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        null,
        h("caption", { class: "visually-hidden" }, "Presets"),
        h("thead", null, h("tr", null, ["Preset", "Delivery", "Container", "Video", "Quality", "Cost per minute", "Owner"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", null, presets.map(presetRow)),
      ),
    ),
  );
}

function presetRow(p: Preset): HTMLTableRowElement {
  const spec = p.spec;
  const video = (spec?.video ?? []).map((v) => `${VideoCodec[v.codec]?.toLowerCase() ?? "?"} ${RESOLUTIONS[v.resolution] ?? (v.height ? `${v.height}p` : "source")}`).join(", ");
  return h(
    "tr",
    { "data-preset": p.slug },
    h("th", { scope: "row" }, h("strong", null, p.name), h("br"), h("code", null, p.slug), p.description ? h("p", { class: "hint" }, p.description) : null),
    h("td", null, DeliveryFormat[spec?.deliveryFormat ?? 0]?.toLowerCase() ?? ""),
    h("td", null, Container[spec?.container ?? 0]?.toLowerCase() ?? ""),
    h("td", null, video),
    h("td", null, Quality[spec?.quality ?? 0]?.toLowerCase() ?? ""),
    h("td", { class: "num" }, p.estimatedCostPerMinute ? `${p.estimatedCostPerMinute} ${p.currency}` : "—"),
    h("td", null, p.systemPreset ? "system" : "yours"),
  );
}
