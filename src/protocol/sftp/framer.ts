import { WireError } from "../wire/errors.js"

/**
 * Splits the channel's byte stream into SFTP packets (uint32 length, then that many bytes).
 * A packet inside one received chunk is returned as a view of it; one spanning chunks is
 * copied once. Lengths of 0 or beyond `maxPacketLength` throw WireError before any allocation.
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
    if (this.buffered < 4) return undefined
    const length = this.peekLength()
    if (length === 0) throw new WireError("SFTP packet of length 0")
    if (length > this.maxPacketLength) {
      throw new WireError(`SFTP packet of ${length} bytes exceeds the maximum of ${this.maxPacketLength}`)
    }
    if (this.buffered < 4 + length) return undefined
    this.skip(4)
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

  private skip(n: number): void {
    this.take(n)
  }

  private take(n: number): Uint8Array {
    this.buffered -= n
    const first = this.chunks[0]!
    if (first.length > n) {
      this.chunks[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    if (first.length === n) {
      this.chunks.shift()
      return first
    }
    const out = new Uint8Array(n)
    let got = 0
    while (got < n) {
      const c = this.chunks[0]!
      const k = Math.min(n - got, c.length)
      out.set(c.subarray(0, k), got)
      got += k
      if (k === c.length) this.chunks.shift()
      else this.chunks[0] = c.subarray(k)
    }
    return out
  }
}
