"""Running a model: loading weights and adapters, prompts from the chat template, generation
(one row, or many through the step decoder), and the tiny reference model."""
