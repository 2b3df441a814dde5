/**
 * Binary packet protocol throughput: encode + decode of 32 KiB payloads per cipher, in MB/s of
 * payload, next to node:crypto's raw AES-128-GCM on the same buffers as the ceiling.
 * Run: node --import tsx bench/packet.ts
 */
import { createCipheriv, randomBytes } from "node:crypto"
import { CIPHERS } from "../src/protocol/crypto/ciphers.js"
import { MACS } from "../src/protocol/crypto/macs.js"
import { PacketDecoder, PacketEncoder } from "../src/protocol/transport/packet.js"

const PAYLOAD = 32 * 1024
const SECONDS = 1.5

const CASES: ReadonlyArray<readonly [string, string]> = [
  ["aes128-gcm@openssh.com", "none"],
  ["aes256-gcm@openssh.com", "none"],
  ["chacha20-poly1305@openssh.com", "none"],
  ["aes128-ctr", "hmac-sha2-256-etm@openssh.com"],
  ["aes128-ctr", "hmac-sha2-256"],
  ["aes256-cbc", "hmac-sha2-512-etm@openssh.com"]
]

function mbPerSecond(bytes: number, ms: number): string {
  return ((bytes / 1e6) / (ms / 1e3)).toFixed(0).padStart(6)
}

function measure(step: () => void): number {
  for (let i = 0; i < 50; i++) step() // warm-up
  let rounds = 0
  const start = performance.now()
  while (performance.now() - start < SECONDS * 1000) {
    for (let i = 0; i < 20; i++) step()
    rounds += 20
  }
  return (rounds * PAYLOAD) / ((performance.now() - start) / 1000)
}

const payload = randomBytes(PAYLOAD)
console.log(`packet bench: ${PAYLOAD / 1024} KiB payloads, MB/s of payload (node ${process.version})`)

const gcmKey = randomBytes(16)
const gcmIv = randomBytes(12)
const ceiling = measure(() => {
  const c = createCipheriv("aes-128-gcm", gcmKey, gcmIv)
  c.update(payload)
  c.final()
  c.getAuthTag()
})
console.log(`${"node:crypto aes-128-gcm encrypt only (ceiling)".padEnd(52)} ${mbPerSecond(ceiling, 1000)}`)

for (const [cipher, mac] of CASES) {
  const keys = {
    cipher,
    mac,
    encKey: randomBytes(CIPHERS[cipher].keyLength),
    iv: randomBytes(CIPHERS[cipher].ivLength),
    macKey: randomBytes(MACS[mac].keyLength)
  }
  const encoder = new PacketEncoder()
  const decoder = new PacketDecoder()
  encoder.setKeys(keys)
  decoder.setKeys(keys)
  const encodeOnly = new PacketEncoder()
  encodeOnly.setKeys(keys)
  const both = measure(() => {
    decoder.push(encoder.encode(payload))
    if (decoder.next()?.length !== PAYLOAD) throw new Error("round trip failed")
  })
  const encode = measure(() => encodeOnly.encode(payload))
  const name = CIPHERS[cipher].aead ? cipher : `${cipher} + ${mac}`
  console.log(
    `${name.padEnd(52)} ${mbPerSecond(both, 1000)} encode+decode   (${mbPerSecond(encode, 1000).trim()} encode alone)`
  )
}
