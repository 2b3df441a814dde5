import { releaseView, retainView } from "../crypto/slab.js"
import { WireError } from "../wire/errors.js"
import { concatBytes } from "../wire/writer.js"

/**
 * Splits the channel's byte stream into SFTP packets (uint32 length, then that many bytes).
 * A packet inside one received chunk is returned as a view of it; one spanning chunks is
 * copied once by `next`, or handed out as views of the chunks by `nextParts`. Lengths of 0 or
 * beyond `maxPacketLength` throw WireError before any allocation.
 *
 * A pushed chunk that holds a reference to reusable received memory (see `crypto/slab.ts`) is
 * the framer's until it has handed out every byte of it: each view handed out holds a reference
 * of its own, and the chunk's is given back once it is used up.
 */
export class SftpFramer {
  private chunks: Array<Uint8Array> = []
  private buffered = 0

  constructor(readonly maxPacketLength: number) {}

  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.chunks.push(bytes)
    this.buffered += bytes.length
  }

  /** Bytes received but not yet returned as packets. */
  get pending(): number {
    return this.buffered
  }

  /** The next whole packet body (type byte first), or undefined until more bytes arrive. */
  next(): Uint8Array | undefined {
    const parts = this.nextParts()
    return parts === undefined ? undefined : parts.length === 1 ? parts[0]! : concatBytes(...parts)
  }

  /**
   * The next whole packet body as views of the received chunks, in order (one view when it
   * lies within one chunk), or undefined until more bytes arrive. Nothing is copied, so a
   * 255 KiB DATA that came in 32 KiB channel packets can go to disk as it is.
   */
  nextParts(): Array<Uint8Array> | undefined {
    if (this.buffered < 4) return undefined
    const length = this.peekLength()
    if (length === 0) throw new WireError("SFTP packet of length 0")
    if (length > this.maxPacketLength) {
      throw new WireError(`SFTP packet of ${length} bytes exceeds the maximum of ${this.maxPacketLength}`)
    }
    if (this.buffered < 4 + length) return undefined
    this.drop(4)
    return this.take(length)
  }

  private peekLength(): number {
    const first = this.chunks[0]!
    if (first.length >= 4) return ((first[0]! << 24) | (first[1]! << 16) | (first[2]! << 8) | first[3]!) >>> 0
    const head = new Uint8Array(4)
    let got = 0
    for (const c of this.chunks) {
      const n = Math.min(4 - got, c.length)
      head.set(c.subarray(0, n), got)
      got += n
      if (got === 4) break
    }
    return ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0
  }

  private drop(n: number): void {
    this.buffered -= n
    while (n > 0) {
      const c = this.chunks[0]!
      if (c.length > n) {
        this.chunks[0] = c.subarray(n)
        return
      }
      this.chunks.shift()
      releaseView(c)
      n -= c.length
    }
  }

  private take(n: number): Array<Uint8Array> {
    this.buffered -= n
    const parts: Array<Uint8Array> = []
    while (n > 0) {
      const c = this.chunks[0]!
      if (c.length > n) {
        this.chunks[0] = c.subarray(n)
        const part = c.subarray(0, n)
        retainView(part)
        parts.push(part)
        break
      }
      // the whole chunk goes out: its reference goes with it
      this.chunks.shift()
      parts.push(c)
      n -= c.length
    }
    return parts
  }
}
