#!/usr/bin/env node
import { exitUsage, runProgram } from './exit.js';
import { buildProgram } from './program.js';

try {
  process.exitCode = await runProgram(buildProgram(), process.argv);
} catch (err) {
  // An action that threw instead of returning its status: the command could not run.
  process.stderr.write(`amber: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = exitUsage;
}
