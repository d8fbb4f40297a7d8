"""`mtvctl`: the command-line client. It only talks to Kafka and the services' APIs."""
