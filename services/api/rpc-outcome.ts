import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

type Next = Parameters<Interceptor>[0];
type Request = Parameters<Next>[0];
type Response = Awaited<ReturnType<Next>>;

/** How an RPC ended: `undefined` is OK; `error` is what the caller is told. */
export type RpcEnd = (code: Code | undefined, error?: ConnectError) => void;

/**
 * Calls `next` and reports how the call ended: a unary call when it returns or throws, a
 * stream at its last message, its error, or the client going away (`canceled`). `step` runs
 * each read of the stream (to give it an async context, as the request id's log fields).
 */
export async function untilRpcEnds(req: Request, next: Next, ended: RpcEnd, step: <T>(read: () => Promise<T>) => Promise<T> = (read) => read()): Promise<Response> {
  let res: Response;
  try {
    res = await next(req);
  } catch (err) {
    const error = ConnectError.from(err);
    ended(error.code, error);
    throw error;
  }
  if (!res.stream) {
    ended(undefined);
    return res;
  }
  const source = res.message[Symbol.asyncIterator]();
  return {
    ...res,
    message: (async function* () {
      let over = false;
      try {
        for (;;) {
          const read = await step(() => source.next());
          if (read.done) break;
          yield read.value;
        }
        over = true;
        ended(undefined);
      } catch (err) {
        over = true;
        const error = ConnectError.from(err);
        ended(error.code, error);
        throw err;
      } finally {
        if (!over) {
          // The client went away mid-stream: end the source too (its own finally blocks run).
          ended(Code.Canceled);
          await source.return?.();
        }
      }
    })(),
  };
}
