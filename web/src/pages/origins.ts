/** Origins: where inputs are read and outputs written (OriginService.List), with a Validate button. */
import { OriginPermission, OriginProvider, OriginStatus, type Origin } from "../../../gen/rendition/v1/origin_pb.js";
import { h, replace } from "../dom.js";
import { formatTime } from "../format.js";
import type { PageContext } from "../main.js";
import { errorBox } from "../widgets.js";
import { listAllOrigins } from "./create.js";

export async function originsPage(ctx: PageContext, root: HTMLElement): Promise<void> {
  ctx.title("Origins");
  const origins = await listAllOrigins(ctx.api, ctx.signal);
  root.append(
    h("p", { class: "hint" }, "Create, update and archive origins with OriginService (docs/api.md); credentials are write-only and never shown."),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        null,
        h("caption", { class: "visually-hidden" }, "Origins"),
        h("thead", null, h("tr", null, ["Name", "Provider", "Location", "Permissions", "Status", "Last validated", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", null, origins.length ? origins.map((o) => originRow(ctx, o)) : h("tr", null, h("td", { colspan: 7, class: "empty" }, "No origins."))),
      ),
    ),
  );
}

function location(o: Origin): string {
  const base = o.basePath ? `/${o.basePath}` : "";
  if (o.s3) return `s3://${o.s3.bucket}${base}${o.s3.endpoint ? ` at ${o.s3.endpoint}` : ""}`;
  if (o.http) return `${o.http.baseUrl}${base}`;
  if (o.local) return `${o.local.rootDir}${base}`;
  return base || "—";
}

function originRow(ctx: PageContext, o: Origin): HTMLTableRowElement {
  const result = h("span", { role: "status", "aria-live": "polite" });
  const validate = h("button", {
    type: "button",
    "aria-label": `Validate ${o.name}`,
    onclick: () => {
      replace(result, "Checking…");
      ctx.api.origins.validate({ id: o.id }, { signal: ctx.signal }).then(
        (r) => replace(result, r.valid ? "Valid" : h("span", { class: "error" }, r.error || "invalid")),
        (err: unknown) => replace(result, errorBox(err)),
      );
    },
  }, "Validate");
  return h(
    "tr",
    { "data-origin-id": o.id },
    h("th", { scope: "row" }, h("strong", null, o.name), h("br"), h("span", { class: "mono hint" }, o.id), o.description ? h("p", { class: "hint" }, o.description) : null),
    h("td", null, OriginProvider[o.provider]?.toLowerCase() ?? ""),
    h("td", { class: "mono" }, location(o)),
    h("td", null, o.permissions.map((p) => OriginPermission[p]?.toLowerCase()).join(", ")),
    h("td", null, OriginStatus[o.status]?.toLowerCase() ?? "", o.validationError ? h("p", { class: "error" }, o.validationError) : null),
    h("td", { class: "nowrap" }, formatTime(o.lastValidatedAt)),
    h("td", null, validate, " ", result),
  );
}
