// m3u8-parser 7 and mpd-parser 1 (video.js) ship no type declarations; the tests read their
// output loosely.
declare module "m3u8-parser" {
  export class Parser {
    push(text: string): void;
    end(): void;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    manifest: any;
  }
}
declare module "mpd-parser" {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  export function parse(text: string, options: { manifestUri: string }): any;
}
