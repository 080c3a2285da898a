#!/usr/bin/env node
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { registerCollectCommand } from './collect.js';
import { registerOperatorCommand } from './operator.js';
import { registerVerifyCommand } from './verify.js';

const program = new Command('amber')
  .description('Preserve the evidence of a container compromise before the orchestrator destroys it')
  .version(
    (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
      .version,
  )
  .showHelpAfterError();
registerOperatorCommand(program);
registerCollectCommand(program);
registerVerifyCommand(program);
await program.parseAsync(process.argv);
