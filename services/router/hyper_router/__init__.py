"""Router service: Route(dataset, budget) -> a human/AI assignment per instance."""
