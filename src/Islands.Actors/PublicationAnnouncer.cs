using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Event;
using Islands.Actors.Serving;

namespace Islands.Actors;

/// <summary>
/// On an island node: forwards each publication of this node's job to every model registry of the serving cluster
/// (one per serving node) through a cluster client (islands and serving are separate clusters), so every serving node
/// picks up a new checkpoint within moments, not only the one the receptionist would pick.
/// Best effort: a serving cluster that is down misses the message and finds the publication at its next rescan.
/// </summary>
public sealed class PublicationAnnouncer : ReceiveActor
{
    public const string RegistryPath = "/user/model-registry";

    public static Props Props(IActorRef clusterClient) => Akka.Actor.Props.Create(() => new PublicationAnnouncer(clusterClient));

    public PublicationAnnouncer(IActorRef clusterClient)
    {
        var log = Context.GetLogger();
        Receive<ModelPublished>(published =>
        {
            log.Info("announcing {0} at step {1} to the serving registries", published.Job, published.Step);
            clusterClient.Tell(new ClusterClient.SendToAll(RegistryPath, published));
        });
    }

    protected override void PreStart() => Context.System.EventStream.Subscribe(Self, typeof(ModelPublished));
}
