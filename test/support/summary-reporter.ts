import type { Reporter, TestModule } from "vitest/node"

/**
 * Prints the one closing line CI reads, `N passed, N failed, N skipped`, counted from
 * vitest's own results. Counted when the run ends, printed last (after vitest's footer).
 */
export default class SummaryReporter implements Reporter {
  private line = ""

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
      }
      // a file that failed to load has no tests but must count as a failure
      if (mod.state() === "failed" && mod.children.size === 0) failed++
    }
    this.line = `${passed} passed, ${failed} failed, ${skipped} skipped`
  }

  onFinished(): void {
    if (this.line) process.stdout.write(`\n${this.line}\n`)
  }
}
