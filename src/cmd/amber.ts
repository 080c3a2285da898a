#!/usr/bin/env node
import { Command } from 'commander';
import { registerCollectCommand } from './collect.js';
import { registerOperatorCommand } from './operator.js';
import { registerVerifyCommand } from './verify.js';

const program = new Command('amber')
  .description('Preserve the evidence of a container compromise before the orchestrator destroys it')
  .showHelpAfterError();
registerOperatorCommand(program);
registerCollectCommand(program);
registerVerifyCommand(program);
await program.parseAsync(process.argv);
