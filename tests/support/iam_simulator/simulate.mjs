// Evaluates IAM requests as AWS would: a JSON list of simulations on stdin (identity policies,
// an optional resource policy, the request), a JSON list of answers on stdout.
import { runSimulation } from '@cloud-copilot/iam-simulate'
import { readFileSync } from 'node:fs'

const simulations = JSON.parse(readFileSync(0, 'utf8'))
const answers = []
for (const simulation of simulations) {
  const response = await runSimulation(
    { serviceControlPolicies: [], resourceControlPolicies: [], ...simulation },
    {}
  )
  answers.push(
    response.resultType === 'error'
      ? { result: 'Error', errors: response.errors }
      : { result: response.overallResult }
  )
}
process.stdout.write(JSON.stringify(answers))
