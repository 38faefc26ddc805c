using Islands.Cli;

return await IslandsCli.RunAsync(args, Console.Out, Console.Error);
