import { describe, expect, it } from "vitest"
import { InboundBuffer } from "../../src/internal/channelState.js"
import type { EarlyCredit } from "../../src/internal/channelState.js"

const KiB = 1024

function streams(creditBytes: number) {
  const reported: Array<number> = []
  const credit: EarlyCredit = { left: creditBytes }
  const onConsumed = (n: number) => reported.push(n)
  return { reported, credit, stdout: new InboundBuffer(onConsumed, credit), stderr: new InboundBuffer(onConsumed, credit) }
}

describe("InboundBuffer: the window moves before the reader runs, within a shared credit", () => {
  it("counts data as consumed on arrival while the credit lasts, the rest when it is taken", () => {
    const { reported, credit, stdout } = streams(1024 * KiB)
    stdout.push(new Uint8Array(600 * KiB))
    expect(reported).toEqual([600 * KiB])
    // 1200 KiB would exceed the credit: this chunk waits for the reader
    stdout.push(new Uint8Array(600 * KiB))
    expect(reported).toEqual([600 * KiB])
    expect(stdout.buffered).toBe(1200 * KiB)
    const taken = stdout.take()
    expect(Array.isArray(taken) && taken.length).toBe(2)
    // only what was not yet reported, and the credit is whole again
    expect(reported).toEqual([600 * KiB, 600 * KiB])
    expect(credit.left).toBe(1024 * KiB)
  })

  it("shares the credit between stdout and stderr, so a channel buffers at most one allowance early", () => {
    const { reported, stdout, stderr } = streams(1024 * KiB)
    stdout.push(new Uint8Array(800 * KiB))
    stderr.push(new Uint8Array(800 * KiB))
    expect(reported).toEqual([800 * KiB])
    stdout.take()
    // stdout gave its credit back: stderr's next chunk is counted at once
    stderr.push(new Uint8Array(100 * KiB))
    expect(reported).toEqual([800 * KiB, 100 * KiB])
    stderr.take()
    expect(reported).toEqual([800 * KiB, 100 * KiB, 800 * KiB])
  })

  it("a reader that never takes holds back everything beyond the credit", () => {
    const { reported, stdout } = streams(1024 * KiB)
    for (let i = 0; i < 64; i++) stdout.push(new Uint8Array(32 * KiB))
    // 2 MiB arrived; only the first 1 MiB was counted as consumed
    expect(reported.reduce((a, b) => a + b, 0)).toBe(1024 * KiB)
  })
})
