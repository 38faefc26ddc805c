-- One journal database per island (islands share nothing). Runs once, on the postgres volume's first start.
CREATE DATABASE expert_0 OWNER islands;
CREATE DATABASE expert_1 OWNER islands;
CREATE DATABASE expert_2 OWNER islands;
CREATE DATABASE expert_3 OWNER islands;
CREATE DATABASE router OWNER islands;
