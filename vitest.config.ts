import { defineConfig } from "vitest/config"

// Two projects: `unit` needs no root and no kernel; `kernel` loads real BPF programs and runs as root.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts", "examples/**/*.test.ts"],
          // examples/out-of-tree is a project of its own, tested against the packed package
          // (scripts/test-out-of-tree.sh).
          exclude: [
            "test/**/*.kernel.test.ts",
            "test/**/*.e2e.test.ts",
            "**/node_modules/**",
            "examples/out-of-tree/**"
          ],
          testTimeout: 30_000
        }
      },
      {
        test: {
          name: "kernel",
          include: ["test/**/*.kernel.test.ts", "test/**/*.e2e.test.ts"],
          testTimeout: 300_000,
          hookTimeout: 600_000,
          fileParallelism: false
        }
      }
    ]
  }
})
