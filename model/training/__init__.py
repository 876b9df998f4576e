"""Teaching and measuring a model: P-tuning v2 and LoRA training, THUDM's metrics, the
multiple-choice exam, and the record formats training reads and writes."""
