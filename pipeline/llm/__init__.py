"""The LLM candidate source, as plain Python tested without a model: `prompt` (what the model is asked),
`patch` (how its answer is checked against the spec), `router` (when it is asked) and `engine` (the contract of
whatever generates: vLLM in the Serve `CandidateGenerator` and in offline evaluation)."""
