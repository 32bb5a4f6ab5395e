/** A refusal of one of Rendition's own file routes (PUT /uploads, GET /files): its HTTP status and a message for the caller. */
export class HttpRefusal extends Error {
  override name = "HttpRefusal";
  constructor(
    readonly status: 400 | 403 | 404 | 409 | 410 | 411 | 413 | 416,
    message: string,
  ) {
    super(message);
  }
}
