import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type { ChannelEnd, ChannelState, ExitInfo, InboundBuffer } from "./internal/channelState.js"
import { fromProtocolError, SshChannelError } from "./SshError.js"

export type { ExitInfo }

/**
 * An open SSH channel: a session (exec, shell, subsystem) or a forwarded connection.
 * Reading `stdout` grants the peer more window as data is taken, so a slow reader holds
 * the remote sender back; memory stays bounded by the window.
 */
export interface SshChannel {
  readonly id: number
  readonly type: string
  /** Channel data, as it arrives. Ends at the peer's EOF or close. */
  readonly stdout: Stream.Stream<Uint8Array, SshChannelError>
  /** Extended data of type 1 (stderr). */
  readonly stderr: Stream.Stream<Uint8Array, SshChannelError>
  /** Writes what flows in, then sends EOF when the stream ends. */
  readonly stdin: Sink.Sink<void, Uint8Array | string, never, SshChannelError>
  /** Writes data, waiting while the peer's window or the socket is full. */
  readonly write: (data: Uint8Array | string) => Effect.Effect<void, SshChannelError>
  /** Writes to stderr (extended data type 1), for server sessions. */
  readonly writeStderr: (data: Uint8Array | string) => Effect.Effect<void, SshChannelError>
  /** Sends EOF: no more data from this side. */
  readonly end: Effect.Effect<void>
  /** Closes the channel (both directions) and waits for the peer's close. */
  readonly close: Effect.Effect<void>
  /** Waits for the channel to close and returns how the remote process ended. */
  readonly exit: Effect.Effect<ExitInfo, SshChannelError>
  /** Sends a channel request; fails when the peer answers failure. */
  readonly request: (name: string, data?: Uint8Array, wantReply?: boolean) => Effect.Effect<void, SshChannelError>
  /** @internal */
  readonly state: ChannelState
}

const encoder = new TextEncoder()
const toBytes = (d: Uint8Array | string) => (typeof d === "string" ? encoder.encode(d) : d)

const closedError = (state: ChannelState) => {
  const e = state.closeError ?? state.driver.closeError
  return new SshChannelError({
    reason: e ? "connection-closed" : "closed",
    message: e ? `channel ${state.id}: ${fromProtocolError(e).message}` : `channel ${state.id} is closed`,
    ...(e ? { cause: fromProtocolError(e) } : {})
  })
}

/** A pull-based stream over an inbound buffer: each pull takes all buffered chunks at once. */
function inbound(state: ChannelState, buffer: InboundBuffer): Stream.Stream<Uint8Array, SshChannelError> {
  type Pulled = Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<SshChannelError>>
  const fromTaken = (taken: ReadonlyArray<Uint8Array> | ChannelEnd): Pulled => {
    if (Array.isArray(taken)) return Effect.succeed(Chunk.unsafeFromArray(taken as Array<Uint8Array>))
    const end = taken as ChannelEnd
    return Effect.fail(end._tag === "closed" && end.error ? Option.some(closedError(state)) : Option.none())
  }
  // data already buffered is returned at once; only an empty buffer waits
  const pull: Pulled = Effect.suspend(() => {
    const ready = buffer.take()
    if (ready !== undefined) return fromTaken(ready)
    return Effect.async<Chunk.Chunk<Uint8Array>, Option.Option<SshChannelError>>((resume) => {
      // taking happens only inside the callback, so an interrupted reader loses no data
      const cancel = buffer.onReadable(() => {
        const taken = buffer.take()
        if (taken !== undefined) resume(fromTaken(taken))
      })
      return Effect.sync(cancel)
    })
  })
  return Stream.repeatEffectChunkOption(pull)
}

const writeWith = (state: ChannelState, dataType: number | undefined) => (data: Uint8Array | string) =>
  Effect.async<void, SshChannelError>((resume) => {
    if (state.closed) return resume(Effect.fail(closedError(state)))
    state.write(toBytes(data), dataType, () =>
      resume(state.closed && state.closeError ? Effect.fail(closedError(state)) : Effect.void)
    )
  })

export function fromState(state: ChannelState): SshChannel {
  const write = writeWith(state, undefined)
  const end = Effect.sync(() => state.eof())
  const whenClosed = Effect.async<void>((resume) => state.whenClosed(() => resume(Effect.void)))
  return {
    id: state.id,
    type: state.type,
    state,
    stdout: inbound(state, state.stdout),
    stderr: inbound(state, state.stderr),
    stdin: Sink.forEach((d: Uint8Array | string) => write(d)).pipe(Sink.zipRight(Sink.fromEffect(end))),
    write,
    writeStderr: writeWith(state, 1),
    end,
    // a peer that never answers our CLOSE must not hold the caller (or a scope) forever
    close: Effect.zipRight(
      Effect.sync(() => state.close()),
      Effect.ignore(Effect.timeout(whenClosed, "10 seconds"))
    ),
    exit: Effect.flatMap(whenClosed, () =>
      state.exit
        ? Effect.succeed(state.exit)
        : state.closeError || state.driver.closeError
          ? Effect.fail(closedError(state))
          : Effect.succeed<ExitInfo>({ code: null, signal: null, coreDumped: false, message: "" })
    ),
    request: (name, data, wantReply = true) =>
      Effect.async<void, SshChannelError>((resume) => {
        if (!wantReply) {
          state.request(name, data)
          return resume(Effect.void)
        }
        state.request(name, data, (ok) =>
          resume(
            ok
              ? Effect.void
              : Effect.fail(
                  state.closed
                    ? closedError(state)
                    : new SshChannelError({ reason: "request-failed", message: `the peer refused the "${name}" request on channel ${state.id}` })
                )
          )
        )
      })
  }
}

/** Waits for the peer to confirm a channel we opened. */
export function awaitOpen(state: ChannelState): Effect.Effect<SshChannel, SshChannelError> {
  return Effect.async<SshChannel, SshChannelError>((resume) =>
    state.whenOpen((result) => {
      if (result.ok) return resume(Effect.succeed(fromState(state)))
      if (result.error) return resume(Effect.fail(closedError(state)))
      resume(
        Effect.fail(
          new SshChannelError({
            reason: "open-failed",
            message: `the peer refused to open a ${state.type} channel: ${result.description || openFailureName(result.reason)}`,
            ...(result.reason !== undefined ? { code: result.reason } : {})
          })
        )
      )
    })
  )
}

function openFailureName(code: number | undefined): string {
  switch (code) {
    case 1:
      return "administratively prohibited"
    case 2:
      return "connect failed"
    case 3:
      return "unknown channel type"
    case 4:
      return "resource shortage"
    default:
      return `reason ${code}`
  }
}
