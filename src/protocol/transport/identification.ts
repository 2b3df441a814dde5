import { DisconnectReason, ProtocolError } from "../wire/errors.js"

/** RFC 4253 §4.2: a version line is at most 255 bytes including CR LF. */
const MAX_LINE = 255
/** What a server may send before its version line; bounded so a peer cannot feed us forever. */
const MAX_PRELUDE_BYTES = 64 * 1024

export interface Identification {
  /** The version line without CR LF, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2`. */
  readonly version: string
  /** The lines the peer sent before its version line (a server's greeting). */
  readonly prelude: ReadonlyArray<string>
  /** Bytes that followed the version line: the start of the binary packet stream. */
  readonly rest: Uint8Array
}

/**
 * Accumulates bytes until the peer's identification line has arrived.
 * `push` returns undefined while more bytes are needed.
 */
export class IdentificationReader {
  private pending = new Uint8Array(0)
  private readonly prelude: string[] = []
  private consumed = 0

  push(chunk: Uint8Array): Identification | undefined {
    const buf = new Uint8Array(this.pending.length + chunk.length)
    buf.set(this.pending)
    buf.set(chunk, this.pending.length)
    let start = 0
    for (;;) {
      const nl = buf.indexOf(0x0a, start)
      if (nl < 0) {
        if (buf.length - start > MAX_LINE) throw tooLong()
        this.pending = buf.slice(start)
        return undefined
      }
      if (nl + 1 - start > MAX_LINE + 1) throw tooLong()
      const end = nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl
      const line = latin1(buf.subarray(start, end))
      this.consumed += nl + 1 - start
      start = nl + 1
      if (line.startsWith("SSH-")) {
        const dash = line.indexOf("-", 4)
        const protocol = dash < 0 ? line.slice(4) : line.slice(4, dash)
        if (protocol !== "2.0" && protocol !== "1.99") {
          throw new ProtocolError(
            "version",
            `peer speaks SSH protocol ${protocol}; only 2.0 is supported`,
            DisconnectReason.PROTOCOL_VERSION_NOT_SUPPORTED
          )
        }
        return { version: line, prelude: this.prelude, rest: buf.subarray(start) }
      }
      this.prelude.push(line)
      if (this.consumed > MAX_PRELUDE_BYTES) {
        throw new ProtocolError("version", "peer sent more than 64 KiB before its identification line")
      }
    }
  }
}

const tooLong = () => new ProtocolError("version", "identification line longer than 255 bytes")

function latin1(bytes: Uint8Array): string {
  let s = ""
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!)
  return s
}
