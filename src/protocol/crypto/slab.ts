/**
 * Buffers for the ciphers' output: decrypted packets, and the ciphertext of data sealed where it
 * lies. A bulk transfer goes through thousands of 32–256 KiB packets a second, and one fresh
 * allocation each (with the GC work that follows) cost as much as the cipher itself. Large ones
 * are carved from a shared 1 MiB slab instead: one allocation per dozens of packets. A view keeps
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
