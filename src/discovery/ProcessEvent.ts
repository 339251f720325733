/** What discovery reports: a process of interest started (or was already running), or exited. */
export type ProcessEvent =
  | { readonly _tag: "Started"; readonly pid: number; readonly exe: string }
  | { readonly _tag: "Exited"; readonly pid: number }

export const started = (pid: number, exe: string): ProcessEvent => ({ _tag: "Started", pid, exe })
export const exited = (pid: number): ProcessEvent => ({ _tag: "Exited", pid })
