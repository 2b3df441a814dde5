/**
 * Buffers for the ciphers' output: decrypted packets, and the ciphertext of data sealed where it
 * lies. A bulk transfer goes through thousands of 32–256 KiB packets a second, and one fresh
 * allocation each (with the GC work that follows) cost as much as the cipher itself. Large ones
 * are carved from shared 1 MiB slabs instead: one allocation per dozens of packets. A view keeps
 * its slab alive, as Node's own pool does for small Buffers; small ones take that pool.
 */
const SLAB_SIZE = 1024 * 1024
/** Node's pool serves allocations below half its 8 KiB. */
const POOLED_BELOW = 4096

let slab: Buffer = Buffer.alloc(0)
let used = 0

/** Uninitialised memory for `length` bytes, never reused while referenced. */
export function slabBuffer(length: number): Buffer {
  if (length < POOLED_BELOW) return Buffer.allocUnsafe(length)
  if (length > SLAB_SIZE / 4) return Buffer.allocUnsafeSlow(length)
  if (used + length > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE)
    used = 0
  }
  const view = slab.subarray(used, used + length)
  used += (length + 7) & ~7
  return view
}

/**
 * Decrypted packets come from slabs that can be used again. Even carved from slabs, every
 * decrypted byte was new memory, and V8 ran a full collection for every few dozen MiB of it:
 * a download spent as much in those as in the cipher. A consumer
 * that knows when it is done with received bytes (fastGet, once they are on disk) releases them,
 * and a slab whose every view was released goes back to a free list.
 *
 * The count is per slab: each packet carved from it holds one reference, which passes to whoever
 * ends up with the bytes (the SFTP framer), and every view cut from them for a consumer holds
 * one more (`retainView`). A view nobody releases keeps its slab out of reuse for good, and the
 * GC reclaims it as before: forgetting a release costs memory, never data. Releasing a view
 * twice is the one mistake that would, so it throws when the count goes below zero.
 */
interface ReusableSlab {
  readonly bytes: Buffer
  references: number
}

/**
 * A reusable slab hangs off the ArrayBuffer that every view of it shares. (A WeakMap keyed by
 * those ArrayBuffers made each allocation ten times dearer in GC work.)
 */
const SLAB = Symbol("effect-ssh reusable slab")
const slabOf = (view: Uint8Array): ReusableSlab | undefined => (view.buffer as { [SLAB]?: ReusableSlab })[SLAB]
/**
 * Enough to carry a download from slab to slab (the block being written, the one gathered, the
 * current one); at most this much stays held once the process is idle.
 */
const MAX_FREE = 4
const free: Array<ReusableSlab> = []
let current: ReusableSlab | undefined
let currentUsed = 0

/** Memory for a decrypted packet of `length` bytes, holding one reference to its slab. */
export function receivedBuffer(length: number): Buffer {
  if (length < POOLED_BELOW) return Buffer.allocUnsafe(length)
  if (length > SLAB_SIZE / 4) return Buffer.allocUnsafeSlow(length)
  if (current === undefined || currentUsed + length > SLAB_SIZE) {
    const full = current
    current = free.pop() ?? newReusableSlab()
    currentUsed = 0
    if (full !== undefined && full.references === 0) recycle(full)
  }
  const view = current.bytes.subarray(currentUsed, currentUsed + length)
  currentUsed += (length + 7) & ~7
  current.references++
  return view
}

/** One more reference to the slab under `view`, for a consumer that will release it. */
export function retainView(view: Uint8Array): void {
  const slab = slabOf(view)
  if (slab !== undefined) slab.references++
}

/** Gives back one reference taken by `receivedBuffer` or `retainView`; no-op for other memory. */
export function releaseView(view: Uint8Array): void {
  const slab = slabOf(view)
  if (slab === undefined) return
  if (--slab.references < 0) throw new Error("a received buffer was released more often than it was retained")
  if (slab.references === 0 && slab !== current) recycle(slab)
}

function newReusableSlab(): ReusableSlab {
  const slab: ReusableSlab = { bytes: Buffer.allocUnsafeSlow(SLAB_SIZE), references: 0 }
  ;(slab.bytes.buffer as { [SLAB]?: ReusableSlab })[SLAB] = slab
  return slab
}

function recycle(slab: ReusableSlab): void {
  if (free.length < MAX_FREE) free.push(slab)
}
