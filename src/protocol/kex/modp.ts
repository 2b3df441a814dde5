import { createDiffieHellman, getDiffieHellman } from "node:crypto"
import { kexFailure } from "./errors.js"
import type { RandomBytes } from "./types.js"

/** A prime-field Diffie-Hellman group. */
export interface ModpGroup {
  readonly p: bigint
  readonly g: bigint
}

/** The Oakley/MODP groups (RFC 2409 §6.2, RFC 3526), generator 2, as node:crypto ships them. */
export type ModpGroupName = "modp2" | "modp14" | "modp15" | "modp16" | "modp17" | "modp18"

const known = new Map<ModpGroupName, ModpGroup>()

export function modpGroup(name: ModpGroupName): ModpGroup {
  let group = known.get(name)
  if (!group) {
    group = { p: BigInt("0x" + getDiffieHellman(name).getPrime("hex")), g: 2n }
    known.set(name, group)
  }
  return group
}

/** The safe-prime groups a group-exchange server offers (RFC 8270: at least 2048 bits). */
export const GEX_GROUPS: ReadonlyArray<ModpGroupName> = ["modp14", "modp15", "modp16", "modp17", "modp18"]

export function bitLength(v: bigint): number {
  return v.toString(2).length
}

export function bigintToBytes(v: bigint): Uint8Array {
  let hex = v.toString(16)
  if (hex.length % 2) hex = "0" + hex
  return Uint8Array.from(Buffer.from(hex, "hex"))
}

export function bytesToBigint(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt("0x" + Buffer.from(b).toString("hex"))
}

// 512-bit exponents: twice the 256-bit strength of the strongest symmetric keys in use,
// as OpenSSH does (RFC 8268 §4 asks for at least twice the security bits).
const PRIVATE_EXPONENT_BYTES = 64

export interface DhKeyPair {
  readonly publicKey: bigint
  /** K = peer^x mod p as unsigned big-endian bytes, after checking 1 < peer < p-1. */
  agree(peerPublic: bigint): Uint8Array
}

export function dhKeyPair(group: ModpGroup, random: RandomBytes): DhKeyPair {
  const xBytes = random(PRIVATE_EXPONENT_BYTES).slice()
  xBytes[0]! |= 0x80 // a full-length exponent, never 0 or 1
  const checkPeer = (y: bigint): void => {
    if (y <= 1n || y >= group.p - 1n) throw kexFailure("Diffie-Hellman public value out of range (must be 1 < value < p-1)")
  }
  // OpenSSL validates any prime it is handed unless it recognises an RFC 3526 group; that takes
  // 50 ms for the 1024-bit Oakley group and seconds for an unknown 8192-bit one. So only the
  // RFC 3526 groups go through node:crypto; group 1 and other group-exchange primes use bigint.
  if (isRfc3526Group(group)) {
    const dh = createDiffieHellman(Buffer.from(bigintToBytes(group.p)), Number(group.g))
    dh.setPrivateKey(Buffer.from(xBytes))
    const publicKey = bytesToBigint(dh.generateKeys())
    return {
      publicKey,
      agree(peer) {
        checkPeer(peer)
        return new Uint8Array(dh.computeSecret(Buffer.from(bigintToBytes(peer))))
      }
    }
  }
  const x = bytesToBigint(xBytes)
  return {
    publicKey: modPow(group.g, x, group.p),
    agree(peer) {
      checkPeer(peer)
      return bigintToBytes(modPow(peer, x, group.p))
    }
  }
}

function isRfc3526Group(group: ModpGroup): boolean {
  return group.g === 2n && GEX_GROUPS.some((name) => modpGroup(name).p === group.p)
}

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n
  let b = base % modulus
  let e = exponent
  while (e > 0n) {
    if (e & 1n) result = (result * b) % modulus
    b = (b * b) % modulus
    e >>= 1n
  }
  return result
}
