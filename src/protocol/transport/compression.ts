/**
 * Transport compression (RFC 4253 §6.2; "zlib@openssh.com" in OpenSSH PROTOCOL §1.2 is the
 * same stream started after authentication). Each direction is one zlib stream that lives for
 * the whole connection, flushed with Z_SYNC_FLUSH at the end of every packet.
 *
 * node:zlib offers no synchronous call that keeps a stream open (its sync path closes the
 * handle after each call), so this drives pako's port of zlib through its low-level API.
 */
import {
  ZStream,
  Z_BUF_ERROR,
  Z_OK,
  Z_SYNC_FLUSH,
  zlibDeflate,
  zlibDeflateInit,
  zlibInflate,
  zlibInflateInit
} from "pako"
import { DisconnectReason, ProtocolError } from "../wire/errors.js"

export type CompressionMethod = "zlib" | "zlib@openssh.com"

/** OpenSSH's default level. */
const LEVEL = 6
/** zlib asks for more than six free bytes around a sync flush, or it may repeat the flush marker. */
const FLUSH_SLACK = 64

/** One outgoing zlib stream. */
export class PacketCompressor {
  private readonly strm = new ZStream()

  constructor() {
    if (zlibDeflateInit(this.strm, LEVEL) !== Z_OK) throw new Error("zlib deflate init failed")
  }

  /** Compresses one payload and flushes it so the peer can inflate it on its own. */
  compress(payload: Uint8Array): Uint8Array {
    const strm = this.strm
    strm.input = payload
    strm.next_in = 0
    strm.avail_in = payload.length
    // Stored blocks cost 5 bytes per 16 KiB; the sync marker and block headers fit in the slack.
    let out = new Uint8Array(payload.length + (payload.length >>> 10) + FLUSH_SLACK)
    strm.output = out
    strm.next_out = 0
    strm.avail_out = out.length
    for (;;) {
      const status = zlibDeflate(strm, Z_SYNC_FLUSH)
      if (status !== Z_OK && status !== Z_BUF_ERROR) throw new Error(`zlib deflate failed (${status})`)
      if (strm.avail_out > 0 && strm.avail_in === 0) break
      const grown = new Uint8Array(out.length * 2)
      grown.set(out.subarray(0, strm.next_out))
      out = grown
      strm.output = out
      strm.avail_out = out.length - strm.next_out
    }
    return out.subarray(0, strm.next_out)
  }
}

/** One incoming zlib stream; each packet's output is bounded by `maxOutput`. */
export class PacketDecompressor {
  private readonly strm = new ZStream()

  constructor(private readonly maxOutput: number) {
    if (zlibInflateInit(this.strm) !== Z_OK) throw new Error("zlib inflate init failed")
  }

  /**
   * Inflates one packet's compressed payload. Throws a "compression" ProtocolError on corrupt
   * data or when the output would exceed the bound.
   */
  decompress(data: Uint8Array): Uint8Array {
    const strm = this.strm
    strm.input = data
    strm.next_in = 0
    strm.avail_in = data.length
    let out = new Uint8Array(Math.min(this.maxOutput + 1, Math.max(1024, data.length * 4)))
    strm.output = out
    strm.next_out = 0
    strm.avail_out = out.length
    for (;;) {
      const status = zlibInflate(strm, Z_SYNC_FLUSH)
      // Z_STREAM_END too is fatal: a peer that finished its stream cannot send more packets.
      if (status !== Z_OK && status !== Z_BUF_ERROR) {
        throw new ProtocolError("compression", `corrupt compressed packet (zlib status ${status})`, DisconnectReason.COMPRESSION_ERROR)
      }
      if (strm.next_out > this.maxOutput) {
        throw new ProtocolError(
          "compression",
          `compressed packet inflates beyond ${this.maxOutput} bytes`,
          DisconnectReason.COMPRESSION_ERROR
        )
      }
      if (strm.avail_out > 0) break
      // Output full: there may be more. Grow, at most to one byte past the bound so an overflow shows.
      const grown = new Uint8Array(Math.min(this.maxOutput + 1, out.length * 2))
      grown.set(out.subarray(0, strm.next_out))
      out = grown
      strm.output = out
      strm.avail_out = out.length - strm.next_out
    }
    if (strm.avail_in !== 0) {
      throw new ProtocolError("compression", "compressed packet was not fully consumed", DisconnectReason.COMPRESSION_ERROR)
    }
    return out.subarray(0, strm.next_out)
  }
}
