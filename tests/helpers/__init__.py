"""What tests share: the stack driver, synthetic results, running our modules."""
